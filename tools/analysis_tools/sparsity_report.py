# Copyright (c) gap_mm contributors. All rights reserved.
"""Per-layer sparsity of a checkpoint: a table, JSON, CSV and a bar chart.

Usage::

    python tools/analysis_tools/sparsity_report.py CONFIG CHECKPOINT \
        [--out-json F] [--out-csv F] [--out-png F] \
        [--compare CHECKPOINT2 [--labels A B]] [--flops-shape C H W] \
        [--cfg-options KEY=VALUE ...]

Non-zeros are counted in the weights, so any mmdet / mmdet3d checkpoint
works, dense or sparse, trained with gap_mm or not. The prunable layers are
those of the config's GaPHook (``module_types`` / ``include`` /
``exclude`` / ``prune_output_layers``), or without one those a hook
prunes by default (conv, transposed conv, linear and attention weights,
less the frozen ones and the output layers of heads). The partition
column comes from the checkpoint's ``gap_state``, else from the GaPHook's
``partitions``, else it is ``-``. ``--compare`` adds a second checkpoint of
the same model as a column and as grouped bars.
"""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import Config, DictAction

from gap_mm.analysis import (InputShapeAction, ReportError, build_model,
                             format_report, load_checkpoint, match_state_dict,
                             module_flops, plot_sparsity, report_from_files,
                             write_csv, zero_filter_flops)
from gap_mm.errors import GaPConfigError
from gap_mm.prerun_checks import merge_cfg_options


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Per-layer sparsity of a checkpoint')
    parser.add_argument('config', help='config file the model was built by')
    parser.add_argument('checkpoint', help='checkpoint file (.pth)')
    parser.add_argument('--out-json', help='write the report as JSON')
    parser.add_argument('--out-csv', help='write the report as CSV')
    parser.add_argument('--out-png', help='write a bar chart (PNG)')
    parser.add_argument(
        '--compare',
        metavar='CHECKPOINT2',
        help='a second checkpoint of the same model, shown side by side')
    parser.add_argument(
        '--labels',
        nargs='+',
        metavar='LABEL',
        help='a label per checkpoint (defaults to the file names)')
    parser.add_argument(
        '--flops-shape',
        nargs='+',
        type=int,
        action=InputShapeAction,
        metavar='DIM',
        help='C H W of an image (or N C of a point cloud): also count the '
        'FLOPs (mmengine.analysis) for one input of this shape, and what '
        'the all-zero filters of the prunable layers save (give it after '
        'the positional arguments)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, e.g. '
        'custom_hooks.0.exclude="[^backbone\\.conv1\\.]"')
    args = parser.parse_args(argv)
    return args


def default_labels(paths: List[str]) -> List[str]:
    """File names, with their folder when two are the same."""
    names = [osp.basename(p) for p in paths]
    if len(set(names)) < len(names):
        names = [
            osp.join(osp.basename(osp.dirname(osp.abspath(p))), n)
            for p, n in zip(paths, names)
        ]
    return names


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    paths = [args.checkpoint] + ([args.compare] if args.compare else [])
    labels = args.labels or default_labels(paths)
    if len(labels) != len(paths):
        print(
            f'error: --labels needs {len(paths)} label(s), one per '
            f'checkpoint, but got {len(labels)}: {labels}',
            file=sys.stderr)
        return 1
    if not osp.isfile(args.config):
        print(f'error: config {args.config} does not exist', file=sys.stderr)
        return 1
    cfg = Config.fromfile(args.config)
    try:
        merge_cfg_options(cfg, args.cfg_options)
        model = build_model(cfg)
        reports = [report_from_files(cfg, p, model) for p in paths]
        if args.flops_shape:
            flops = module_flops(model, args.flops_shape)
            for report, path in zip(reports, paths):
                state_dict, _ = load_checkpoint(path)
                state_dict = match_state_dict(model, state_dict, path)
                report['flops'] = dict(
                    input_shape=list(args.flops_shape),
                    **zero_filter_flops(
                        flops, state_dict,
                        [r['name'] for r in report['layers']],
                        {r['name']: r['out_dim']
                         for r in report['layers']}))
    except (GaPConfigError, ReportError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1

    for report, label, path in zip(reports, labels, paths):
        print(f'{label}: {path} (partitions from '
              f"{report['partition_source']})")
        for note in report['notes']:
            print(f'note: {note}')
    compare = reports[1] if len(reports) > 1 else None
    print(format_report(reports[0], compare, labels))
    for report, label in zip(reports, labels):
        f = report.get('flops')
        if f:
            print(f'{label}: {f["total"] / 1e9:.3f} GFLOPs for an input of '
                  f'{f["input_shape"]} (mmengine.analysis, a multiply-add '
                  f'is one FLOP); {f["zero_filters"]} of {f["filters"]} '
                  f'filters are all zero, and without them the layers '
                  f'compute {f["without_zero_filters"] / 1e9:.3f} GFLOPs '
                  f'(-{100 * f["saved_fraction"]:.1f}%, a lower bound of '
                  f'what slimming saves); the non-zero weights compute '
                  f'{f["nonzero"] / 1e9:.3f} GFLOPs '
                  f'(-{100 * (1 - f["nonzero"] / f["total"]):.1f}%, what '
                  f'sparse kernels could reach)')

    if args.out_json:
        data = dict(
            config=args.config,
            reports=[
                dict(label=label, checkpoint=path, **report)
                for report, label, path in zip(reports, labels, paths)
            ])
        with open(args.out_json, 'w') as f:
            json.dump(data, f, indent=2)
        print(f'JSON written to {args.out_json}')
    if args.out_csv:
        write_csv(args.out_csv, reports[0], compare)
        print(f'CSV written to {args.out_csv}')
    if args.out_png:
        plot_sparsity(reports, labels, args.out_png)
        print(f'chart written to {args.out_png}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
