# Copyright (c) gap_mm contributors. All rights reserved.
"""Print the demo's result: bbox mAP next to the achieved sparsity and the
dense twin's bbox mAP.

Usage:
    python tools/misc/demo_summary.py CHECKPOINT TEST_WORK_DIR \
        [--dense-test-dir DIR] [--results benchmarks/quality/results]

The dense twin's figure is the one measured here (``--dense-test-dir``,
what ``DEMO_DENSE=1 bash scripts/demo.sh`` trains), else the one the
quality benchmark recorded for the same recipe and seed, with its source.
"""
import argparse
import glob
import json
import os.path as osp
import sys

import gap_mm  # noqa: F401  (allow-lists mmengine's checkpoint classes)
from gap_mm.checkpoint import (load_checkpoint, read_state, split_checkpoint,
                               verify_masked_zero)
from gap_mm.errors import GaPConfigError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: The recorded dense twin of the demo: same config family, seed 0, 1x.
DENSE_CELL = 'det-dense-s0'


def latest_test_metrics(work_dir):
    """The metrics mmengine's LoggerHook dumped for the newest test run."""
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    for path in reversed(files):
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        for record in reversed(lines):
            if 'coco/bbox_mAP' in record:
                return record
    sys.exit(f'error: no test metrics (coco/bbox_mAP) under {work_dir}')


def recorded_dense(results_dir):
    """``(mAP, where)`` of the dense twin in the quality benchmark's
    results, or None."""
    for grid in ('full', 'quick', 'diagnosis'):
        path = osp.join(results_dir, grid, 'cells', f'{DENSE_CELL}.json')
        if osp.isfile(path):
            with open(path) as f:
                cell = json.load(f)
            return cell['value'], (f'recorded by benchmarks/quality/run_grid'
                                   f'.py {grid}, {cell["date"]}, commit '
                                   f'{cell["commit"]}')
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint')
    parser.add_argument('test_work_dir')
    parser.add_argument(
        '--dense-test-dir',
        help='tools/test.py work dir of the dense twin trained here')
    parser.add_argument(
        '--results',
        default=osp.join(ROOT, 'benchmarks', 'quality', 'results'),
        help='the quality benchmark results, for the recorded dense twin')
    args = parser.parse_args()
    try:
        ckpt = load_checkpoint(args.checkpoint)
        state_dict, _ = split_checkpoint(ckpt, args.checkpoint)
        report = verify_masked_zero(state_dict,
                                    read_state(ckpt, args.checkpoint))
    except GaPConfigError as err:
        sys.exit(f'error: {err}')
    bad = [n for n, r in report.items() if r['nonzero_masked']]
    if bad:
        sys.exit(f'error: masked weights are not 0 in {bad}')
    masked = sum(r['numel'] for r in report.values())
    pruned = sum(r['masked'] for r in report.values())
    floats = [v for v in state_dict.values() if v.is_floating_point()]
    total = sum(v.numel() for v in floats)
    zeros = sum(int((v == 0).sum()) for v in floats)
    metrics = latest_test_metrics(args.test_work_dir)
    gap_map = metrics['coco/bbox_mAP']
    if args.dense_test_dir:
        dense = (latest_test_metrics(args.dense_test_dir)['coco/bbox_mAP'],
                 'trained and evaluated by this run')
    else:
        dense = recorded_dense(args.results)
    rows = [
        ('checkpoint', args.checkpoint),
        ('bbox mAP (val, CocoMetric)', f'{gap_map:.3f}'),
        ('bbox mAP@0.5', f"{metrics['coco/bbox_mAP_50']:.3f}"),
        ('sparsity of the pruned layers',
         f'{pruned / max(1, masked):.2%} of {masked:,} weights'),
        ('zeros in the whole state_dict',
         f'{zeros / total:.2%} of {total:,} values'),
    ]
    if dense is not None:
        rows += [
            ('dense twin bbox mAP', f'{dense[0]:.3f} ({dense[1]})'),
            ('GaP - dense', f'{100 * (gap_map - dense[0]):+.1f} points'),
        ]
    else:
        rows.append(('dense twin bbox mAP',
                     'not measured: DEMO_DENSE=1 bash scripts/demo.sh '
                     'trains it'))
    width = max(len(k) for k, _ in rows)
    print('\n== gap_mm demo result ==')
    for key, value in rows:
        print(f'{key.ljust(width)} : {value}')


if __name__ == '__main__':
    main()
