# Copyright (c) gap_mm contributors. All rights reserved.
"""Train and evaluate a quality grid through tools/train.py and
tools/test.py, one cell after another; finished cells are skipped.

Examples:
    .venv/bin/python benchmarks/quality/run_grid.py quick
    nohup .venv/bin/python benchmarks/quality/run_grid.py full \
        > work_dirs/quality_full.log 2>&1 &
    .venv/bin/python benchmarks/quality/run_grid.py full --list
    .venv/bin/python benchmarks/quality/run_grid.py full --report-only

Every finished cell is one JSON file in ``RESULTS/<grid>/cells/``; the
table (``table.md``), ``results.json``, ``results.csv`` and ``plot.png``
are rewritten from them after every run. Work dirs (checkpoints, logs) go
to ``work_dirs/quality/<grid>/<cell>/``; a cell killed mid-training resumes
from its last checkpoint.
"""
import argparse
import os
import os.path as osp
import re
import subprocess
import sys

import report
import runner
from grids import GRIDS

DEFAULT_RESULTS = osp.join(osp.dirname(osp.abspath(__file__)), 'results')

#: Data the tasks train on, and the command that generates each.
DATA = {
    'det': ('data/synthetic_coco/annotations/instances_val2017.json', [
        'tools/dataset_converters/gen_synthetic_coco.py', '--out',
        'data/synthetic_coco', '--num-train', '1000', '--num-val', '100',
        '--img-size', '160', '--seed', '0'
    ]),
    'crowded': ('data/synthetic_coco_crowded/annotations/'
                'instances_val2017.json', [
                    'tools/dataset_converters/gen_synthetic_coco.py', '--out',
                    'data/synthetic_coco_crowded', '--num-train', '1000',
                    '--num-val', '100', '--img-size', '160', '--seed', '1',
                    '--min-objects', '6', '--max-objects', '14',
                    '--min-size', '8', '--max-size', '32', '--classes',
                    'circle', 'square', 'triangle', 'cross', 'ring', 'star',
                    'pentagon', 'hexagon', 'semicircle', 'arrow'
                ]),
    'partseg': ('data/shapenet_part_synthetic/synsetoffset2category.txt', [
        'tools/dataset_converters/gen_shapenet_part.py', '--out',
        'data/shapenet_part_synthetic', '--shapes-per-category', '40'
    ]),
}


def ensure_data(tasks, python: str) -> None:
    """Generate each task's data set unless it is there."""
    for task in sorted(set(tasks)):
        if task not in DATA:
            continue
        marker, cmd = DATA[task]
        if not osp.isfile(osp.join(runner.REPO, marker)):
            print(
                f'[grid] generating the {task} data: {" ".join(cmd)}',
                file=sys.stderr)
            subprocess.run([python, *cmd], cwd=runner.REPO, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('grid', choices=sorted(GRIDS))
    parser.add_argument(
        '--results',
        default=DEFAULT_RESULTS,
        help='folder of the results; the grid writes RESULTS/<grid>/')
    parser.add_argument(
        '--work-root',
        default=osp.join(runner.REPO, 'work_dirs', 'quality'),
        help='work dirs go to WORK_ROOT/<grid>/<cell>/')
    parser.add_argument(
        '--only',
        help='run only the cells whose id matches this regex (the table, '
        'CSV, JSON and plot still cover every finished cell of the grid; '
        'with --report-only, only the matching ones)')
    parser.add_argument(
        '--list', action='store_true', help='list the cells and exit')
    parser.add_argument(
        '--report-only',
        action='store_true',
        help='rewrite the table, CSV, JSON and plot from finished cells')
    parser.add_argument(
        '--keep-going',
        action='store_true',
        help='go on with the next cell when one fails')
    parser.add_argument(
        '--update-readme',
        metavar='README',
        action='append',
        default=[],
        help='rewrite the quality:<grid> block of this Markdown file with '
        'the table, its provenance and the plot, and each '
        'quality:<grid>:method=<method> block with the table of that '
        'method\'s rows and the dense ones (may be repeated)')
    parser.add_argument(
        '--python',
        default=sys.executable,
        help='interpreter for the tools (default: this one)')
    args = parser.parse_args()

    cells = grid_cells = GRIDS[args.grid]()
    if args.only:
        try:
            regex = re.compile(args.only)
        except re.error as err:
            parser.error(f'--only {args.only!r} is not a valid regex: {err}')
        cells = [c for c in cells if regex.search(c.id)]
        if not cells:
            parser.error(f'--only {args.only!r} matches no cell of the '
                         f'{args.grid!r} grid; --list shows them')
    out_dir = osp.join(args.results, args.grid)
    if args.list:
        for cell in cells:
            state = 'done' if osp.isfile(
                osp.join(out_dir, 'cells', f'{cell.id}.json')) else 'todo'
            print(f'{state}  {cell.id}')
        return
    if args.report_only:
        records = report.load_records(out_dir, cells)
        report.write_outputs(records, out_dir)
        print(report.format_table(records))
        report.update_readmes(args.update_readme, args.grid, records,
                              len(cells), out_dir)
        return
    ensure_data((c.task for c in cells), args.python)
    os.makedirs(out_dir, exist_ok=True)
    try:
        records = runner.run_grid(
            cells,
            out_dir,
            osp.join(args.work_root, args.grid),
            python=args.python,
            grid=args.grid,
            keep_going=args.keep_going,
            report_cells=grid_cells)
    except runner.CellFailed as err:
        sys.exit(f'error: {err}')
    print(report.format_table(records))
    report.update_readmes(args.update_readme, args.grid, records,
                          len(grid_cells), out_dir)
    plot = ' and plot.png' if osp.isfile(osp.join(out_dir,
                                                  'plot.png')) else ''
    print(
        f'[grid {args.grid}] wrote {out_dir}/table.md, results.json, '
        f'results.csv{plot}',
        file=sys.stderr)


if __name__ == '__main__':
    main()
