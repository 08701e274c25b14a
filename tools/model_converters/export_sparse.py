# Copyright (c) gap_mm contributors. All rights reserved.
"""Export an MMEngine checkpoint of a sparse model without its zeros.

Usage::

    python tools/model_converters/export_sparse.py CHECKPOINT OUT \
        [--fp16] [--allow-nonzero-masked] [--drop-zero-sign]

Keeps ``state_dict`` and ``meta``, drops the training state (optimizer,
message hub, param schedulers, the GaP hook's ``gap_state`` and anything
else), checks that every weight a GaP mask prunes is exactly 0, writes a
safetensors file in the layout of :mod:`gap_mm.export.sparse_format` and
prints a size report. Load the result with
:func:`gap_mm.export.load_sparse_state_dict`.

The checkpoint is read by :func:`gap_mm.checkpoint.load_checkpoint`
(MMEngine's ``CheckpointLoader`` with ``weights_only=True`` and MMEngine's
own objects allow-listed); anything else is refused: ``weights_only`` is
never turned off, as that would run arbitrary code from the file. Every
error ends the tool with a one-line message and exit code 1.
"""
import argparse
import os
import sys
from typing import List, Optional, Tuple

from gap_mm.export import save_sparse_state_dict
from gap_mm.export.checkpoint_io import read_trained_checkpoint, to_jsonable


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a sparse checkpoint without storing its zeros')
    parser.add_argument('checkpoint', help='MMEngine checkpoint (.pth)')
    parser.add_argument('out', help='output file (e.g. model.safetensors)')
    parser.add_argument(
        '--fp16',
        action='store_true',
        help='store float32/float64 values as float16 (lossy; the loader '
        'casts back to the original dtype)')
    parser.add_argument(
        '--allow-nonzero-masked',
        action='store_true',
        help='export even if weights pruned by the GaP masks are not zero '
        '(they are exported as they are)')
    parser.add_argument(
        '--drop-zero-sign',
        action='store_true',
        help='store -0.0 as +0.0 (numerically equal, not bit-identical); '
        'saves about 1 bit per zero in tensors that hold -0.0')
    return parser.parse_args(argv)


def format_report(rows: List[Tuple[str, int]], dense_bytes: int) -> str:
    """Format (name, bytes) rows as a Markdown table relative to dense."""
    lines = [
        f"| {'item':<31} | {'bytes':>13} | {'MiB':>9} | {'/ dense':>7} |",
        f"|{'-' * 33}|{'-' * 14}:|{'-' * 10}:|{'-' * 8}:|",
    ]
    for name, nbytes in rows:
        lines.append(f'| {name:<31} | {nbytes:>13,} | '
                     f'{nbytes / 2**20:>9.2f} | '
                     f'{nbytes / dense_bytes:>7.3f} |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    state_dict, meta, report = read_trained_checkpoint(
        args.checkpoint, args.out, args.allow_nonzero_masked)

    meta = to_jsonable(meta)
    if not isinstance(meta, dict):
        meta = dict(meta=meta)
    meta['sparse_export'] = dict(
        source=os.path.basename(args.checkpoint),
        fp16=args.fp16,
        drop_zero_sign=args.drop_zero_sign,
        gap_masks=len(report) if report is not None else 0)
    try:
        stats = save_sparse_state_dict(
            state_dict,
            args.out,
            fp16=args.fp16,
            meta=meta,
            keep_zero_sign=not args.drop_zero_sign)
    except (TypeError, ValueError) as err:  # a tensor or name it cannot store
        raise SystemExit(f'error: cannot export {args.checkpoint}: {err}')

    dense = stats['dense_bytes']
    print(f'size report: {args.checkpoint} -> {args.out}')
    rows = [('dense state_dict (torch.save)', dense)]
    if os.path.isfile(args.checkpoint):  # a URL has no local size to show
        rows.append(('original checkpoint', os.path.getsize(args.checkpoint)))
    rows.append(('exported sparse file', stats['file_bytes']))
    print(format_report(rows, dense))
    print(f"ratio (exported / dense state_dict): {stats['ratio']:.4f}")
    print(f"overall sparsity: {stats['sparsity']:.2%} of {stats['numel']:,} "
          'elements are zero')
    if report:
        numel = sum(r['numel'] for r in report.values())
        masked = sum(r['masked'] for r in report.values())
        print(f'GaP-masked sparsity: {masked / max(numel, 1):.2%} of '
              f'{numel:,} weights in {len(report)} tensors')
    exactness = ('lossy: ' + ', '.join(stats['lossy_reasons'])
                 if stats['lossy'] else 'lossless (bit-identical)')
    print(f"tensors: {stats['num_tensors']} ({stats['num_sparse']} sparse, "
          f"{stats['num_dense']} dense), {exactness}")
    if stats['neg_zeros']:
        print(f"note: {stats['neg_zeros']:,} zeros are -0.0 (as w.mul_(mask) "
              'leaves them) and are stored bit-exact, at up to 1 bit per '
              'zero; --drop-zero-sign stores them as +0.0')
    return 0


if __name__ == '__main__':
    sys.exit(main())
