# Copyright (c) gap_mm contributors. All rights reserved.
"""The fault matrix: every method's demo run SIGKILLed at a chosen point,
resumed with ``--resume``, and compared with an uninterrupted run.

For each method (C-GaP, P-GaP, GMP, RigL, SET, GReg-2, SCS) its demo config
(``configs/<method>/*_synthetic-coco.py``) trains 10 iterations on tiny
procedural data (``tools/dataset_converters/gen_synthetic_coco.py``, 64 px,
batch 2, the demo's one data-loader worker), its schedule shortened
through ``--cfg-options`` so that its events happen within them;
checkpoints every 4 iterations. The config run
is ``<out-dir>/configs/<method>.py``: the demo config as its ``_base_``,
with ``gap_mm.testing.faults`` added to its ``custom_imports``. One run goes
through uninterrupted. Every other run of the same command kills itself
(``gap_mm.testing.faults``, armed by ``GAP_MM_FAULT``) at one point:

* mid-iteration: inside the optimizer step of iteration 6;
* during the method's event: a mask event, GReg's penalty growth and its
  prune, SCS's ``lambda`` update;
* during the write of ``iter_8.pth``;
* P-GaP only: inside the combine of its rank groups.

then runs again with ``--resume`` to the end. The cell says whether the
last checkpoint, ``iter_10.pth``, is bit-identical to the uninterrupted
run's (``gap_mm.testing.e2e.checkpoint_differences``: model state_dict,
optimizer state, LR schedulers, masks and method state, step and seed),
or what differs. P-GaP runs on 2 processes (``tools/dist_train.sh``, gloo
on the CPU); the others on one.

Usage::

    OMP_NUM_THREADS=1 python tools/analysis_tools/fault_matrix.py \\
        [--out-dir work_dirs/fault_matrix] [--methods cgap pgap ...] \\
        [--columns iteration event save combine]

Writes ``<out-dir>/fault_matrix.json`` and ``<out-dir>/fault_matrix.md``
(the table of docs/en/advanced_guides/fault_tolerance.md) and prints the
table. Exits with 1 when a cell is not bit-identical.
"""
import argparse
import json
import os
import os.path as osp
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from gap_mm.testing.e2e import (checkpoint_differences,  # noqa: E402
                                free_port, load_checkpoint, run_tool)
from gap_mm.testing.faults import FAULT_ENV, FAULT_RANK_ENV  # noqa: E402
from gap_mm.testing.faults import MARKER  # noqa: E402

DEMO = 'retinanet_r18-fpn_1xb8-2k_synthetic-coco.py'
MAX_ITERS = 10
CHECKPOINT_INTERVAL = 4
#: Image side of the generated data and of the pipeline's Resize.
IMG_SIZE = 64
#: Per run; the slowest here (P-GaP, 2 processes) takes about a minute.
TIMEOUT = 900

#: The columns of the table, the kinds of kill point: key -> header.
COLUMNS = {
    'iteration': 'mid-iteration',
    'event': "during the method's event",
    'save': 'during a checkpoint write',
    'combine': 'during the P-GaP combine',
}

#: What every run of the matrix changes in a demo config.
COMMON_OPTIONS = [
    'train_dataloader.batch_size=2',
    f'train_dataloader.dataset.pipeline.2.scale=({IMG_SIZE},{IMG_SIZE})',
    'val_dataloader=None',
    'val_cfg=None',
    'val_evaluator=None',
    f'train_cfg.max_iters={MAX_ITERS}',
    # warm-up over 4 iterations, cosine over the last 4
    'param_scheduler.0.end=4',
    'param_scheduler.1.begin=6',
    f'param_scheduler.1.end={MAX_ITERS}',
    'param_scheduler.1.T_max=4',
    f'default_hooks.checkpoint.interval={CHECKPOINT_INTERVAL}',
    'default_hooks.logger.interval=1',
]


@dataclass
class Kill:
    """One kill point of a method: its column, the ``GAP_MM_FAULT`` value,
    the rank that dies, and what happens there."""
    column: str
    fault: str
    what: str
    rank: int = 0


@dataclass
class Method:
    """A method's demo config, how the matrix shortens it, and its kills."""
    name: str
    key: str
    config: str
    options: List[str]
    events: str
    kills: List[Kill] = field(default_factory=list)
    procs: int = 1


def _common_kills(events: List[Kill]) -> List[Kill]:
    return [
        Kill('iteration', 'step:5',
             'in the optimizer step of iteration 6, after the weights moved, '
             'before they are masked again'),
        *events,
        Kill('save', 'save:8',
             'with half of iter_8.pth written to its temporary file'),
    ]


METHODS = [
    Method(
        'C-GaP', 'cgap', f'gap/cgap_{DEMO}', [
            'custom_hooks.0.schedule.period=2',
            'custom_hooks.0.schedule.num_rounds=1'
        ], 'K=4 partitions grown in turn every 2 iterations: events at 2, 4, '
        '6 and 8 (prune partition 3), fine-tune 8-10',
        _common_kills([
            Kill('event', 'masks:6',
                 'in the event for step 6 (prune partition 2, grow 3): masks '
                 'changed, optimizer state not yet zeroed')
        ])),
    Method(
        'P-GaP', 'pgap',
        'pgap/pgap_retinanet_r18-fpn_2xb8-2k_synthetic-coco.py', [
            'custom_hooks.0.schedule.period=2',
            'custom_hooks.0.schedule.num_rounds=4',
            'train_dataloader.sampler.group_samples=16'
        ], '2 processes in K=2 rank groups, combined every 2 iterations (at '
        '2, 4, 6 and 8), fine-tune 8-10',
        _common_kills([
            Kill('event', 'masks:6',
                 'rank 0, in the mask event of the combine for step 6 (the '
                 'models combined, before the log and the regrowth)')
        ]) + [
            Kill('combine', 'combine:8',
                 'rank 1, inside the combine for step 8, after partition 0 '
                 'was broadcast, before partition 1 and the averaging', 1)
        ],
        procs=2),
    Method(
        'GMP', 'gmp', f'gmp/gmp_{DEMO}', [
            'custom_hooks.0.begin=2', 'custom_hooks.0.end=8',
            'custom_hooks.0.interval=2'
        ], 'dense, then cubic prunes at 4, 6 and 8 (nothing at 2)',
        _common_kills([
            Kill('event', 'masks:6',
                 'in the prune for step 6: masks changed, optimizer state '
                 'not yet zeroed')
        ])),
    Method(
        'RigL', 'rigl', f'rigl/rigl_{DEMO}',
        ['custom_hooks.0.interval=2', 'custom_hooks.0.end=8'],
        'drop and grow (gradient) at 2, 4, 6 and 8',
        _common_kills([
            Kill('event', 'masks:6',
                 'in the drop and grow for step 6: masks changed, optimizer '
                 'state not yet zeroed or reset')
        ])),
    Method(
        'SET', 'set', f'set/set_{DEMO}',
        ['custom_hooks.0.interval=2', 'custom_hooks.0.end=8'],
        'drop and grow (random) at 2, 4, 6 and 8',
        _common_kills([
            Kill('event', 'masks:6',
                 'in the drop and grow for step 6: masks changed, optimizer '
                 'state not yet zeroed or reset')
        ])),
    Method(
        'GReg-2', 'greg2', f'greg/greg2_{DEMO}', [
            'load_from=None', 'custom_hooks.0.begin=2',
            'custom_hooks.0.update_interval=1',
            'custom_hooks.0.granularity_pick=0.005',
            'custom_hooks.0.upper_limit_pick=0.01',
            'custom_hooks.0.granularity=0.5', 'custom_hooks.0.upper_limit=1.0',
            'custom_hooks.0.stabilize=1', 'custom_hooks.0.mag_ratio_limit=None'
        ], 'from scratch (load_from=None); penalty on every weight at 2 and '
        '3, pick at 3, growth of the picked set at 4 and 5, prune at 6',
        _common_kills([
            Kill('event', 'penalty:5',
                 'in the penalty growth for step 5, after the first layer\'s '
                 'penalty grew'),
            Kill('event', 'masks:6',
                 'in the prune for step 6: masks set, optimizer state not '
                 'yet zeroed'),
        ])),
    Method(
        'SCS', 'scs', f'scs/scs_{DEMO}', [
            'custom_hooks.0.begin=2', 'custom_hooks.0.freeze=8',
            'custom_hooks.0.lambda_interval=2'
        ], 'gates sampled from 2, lambda moved at 2, 4 and 6, structure '
        'frozen at 8; the gate logits take an SGD step in every optimizer '
        'step',
        _common_kills([
            Kill('event', 'lambda:6',
                 'right after lambda moved at the end of iteration 7 (before '
                 'that iteration\'s logging and checkpoint hooks)')
        ])),
]


def generate_data(out_dir: str) -> str:
    """The tiny procedural COCO set (16 training images of 64 px), once."""
    root = osp.join(out_dir, 'data')
    if not osp.isfile(osp.join(root, 'annotations',
                               'instances_train2017.json')):
        run_tool([
            sys.executable,
            osp.join(REPO, 'tools', 'dataset_converters',
                     'gen_synthetic_coco.py'), '--out', root, '--num-train',
            '16', '--num-val', '2', '--img-size',
            str(IMG_SIZE)
        ], REPO, [REPO])
    return root + '/'


def write_config(method: Method, out_dir: str) -> str:
    """The method's demo config with ``gap_mm.testing.faults`` imported (a
    module in ``custom_imports`` is imported when the config is read, before
    ``--cfg-options`` apply, so it cannot be given there)."""
    path = osp.join(out_dir, 'configs', f'{method.key}.py')
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(f'_base_ = {osp.join(REPO, "configs", method.config)!r}\n'
                f'custom_imports = dict(imports=["gap_mm", '
                f'"gap_mm.testing.faults"], allow_failed_imports=False)\n')
    return path


def _command(method: Method, config: str, data_root: str, work_dir: str,
             resume: bool) -> List[str]:
    if method.procs > 1:
        cmd = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), config,
               str(method.procs)]
    else:
        cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), config]
    cmd += ['--work-dir', work_dir]
    if resume:
        cmd.append('--resume')
    return cmd + [
        '--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
        *COMMON_OPTIONS, *method.options
    ]


def _run(method: Method, config: str, data_root: str, work_dir: str,
         log_name: str, resume: bool = False, fault: Optional[Kill] = None):
    env = {'PORT': str(free_port())}
    if fault is not None:
        env.update({FAULT_ENV: fault.fault, FAULT_RANK_ENV: str(fault.rank)})
    os.makedirs(work_dir, exist_ok=True)
    start = time.monotonic()
    proc = run_tool(
        _command(method, config, data_root, work_dir, resume),
        REPO, [REPO],
        check=False,
        timeout=TIMEOUT,
        **env)
    seconds = time.monotonic() - start
    log = proc.stdout + proc.stderr
    with open(osp.join(osp.dirname(work_dir), f'{log_name}.log'), 'w') as f:
        f.write(log)
    return proc.returncode, log, seconds


def _last_line(log: str) -> str:
    lines = [x for x in log.strip().splitlines() if x.strip()]
    return lines[-1][-300:] if lines else ''


def _left_on_disk(work_dir: str) -> Dict[str, object]:
    names = sorted(n for n in os.listdir(work_dir)
                   if n.endswith('.pth') or '.pth.tmp-' in n)
    last = osp.join(work_dir, 'last_checkpoint')
    named = open(last).read().strip() if osp.isfile(last) else None
    return dict(
        files=[re.sub(r'tmp-.*', 'tmp-*', n) for n in names],
        last_checkpoint=osp.basename(named) if named else None)


def run_cell(method: Method, kill: Kill, config: str, data_root: str,
             base: str, reference: dict) -> dict:
    """Kill, resume and compare one cell."""
    name = f'{kill.fault.replace(":", "-")}'
    work_dir = osp.join(base, name, 'work')
    cell = dict(
        method=method.name,
        column=kill.column,
        fault=kill.fault,
        rank=kill.rank,
        what=kill.what)
    rc, log, seconds = _run(method, config, data_root, work_dir, 'killed',
                            fault=kill)
    marker = f'{MARKER} {kill.fault} (rank {kill.rank})'
    cell.update(killed_rc=rc, killed_seconds=round(seconds, 1))
    if marker not in log:
        cell.update(
            verdict='not killed',
            reason=f'the kill point was not reached (exit code {rc}): '
            f'{_last_line(log)}')
        return cell
    cell['left'] = _left_on_disk(work_dir)
    rc, log, seconds = _run(method, config, data_root, work_dir, 'resumed',
                            resume=True)
    cell['resumed_seconds'] = round(seconds, 1)
    found = re.search(r'resumed epoch: \d+, iter: (\d+)', log)
    cell['resumed_at'] = int(found.group(1)) if found else 0
    if rc != 0:
        cell.update(
            verdict='resume failed',
            reason=f'exit code {rc}: {_last_line(log)}')
        return cell
    final = osp.join(work_dir, f'iter_{MAX_ITERS}.pth')
    diff = checkpoint_differences(reference, load_checkpoint(final))
    cell['differences'] = diff
    cell['verdict'] = 'bit-identical' if not diff else 'differs'
    if diff:
        cell['reason'] = f'{len(diff)} entries differ, e.g. {diff[:3]}'
    return cell


def run_method(method: Method, data_root: str, out_dir: str,
               columns) -> List[dict]:
    """The uninterrupted run, then every cell of ``method`` in
    ``columns``; what an earlier run left in its work dirs is removed
    first."""
    base = osp.join(out_dir, method.key)
    shutil.rmtree(base, ignore_errors=True)
    config = write_config(method, out_dir)
    ref_dir = osp.join(base, 'uninterrupted', 'work')
    final = osp.join(ref_dir, f'iter_{MAX_ITERS}.pth')
    rc, log, _ = _run(method, config, data_root, ref_dir, 'run')
    if rc != 0:
        return [
            dict(
                method=method.name,
                column=k.column,
                fault=k.fault,
                rank=k.rank,
                what=k.what,
                verdict='no reference',
                reason=f'the uninterrupted run failed ({rc}): '
                f'{_last_line(log)}') for k in method.kills
            if k.column in columns
        ]
    reference = load_checkpoint(final)
    cells = []
    for kill in method.kills:
        if kill.column in columns:
            cell = run_cell(method, kill, config, data_root, base,
                            reference)
            print(f'{method.name:7} {kill.fault:10} {cell["verdict"]}'
                  f'{": " + cell["reason"] if "reason" in cell else ""}',
                  flush=True)
            cells.append(cell)
    return cells


def _cell_text(cell: dict) -> str:
    if cell['verdict'] == 'bit-identical':
        text = f'bit-identical, resumed at iter {cell["resumed_at"]}'
        if cell['column'] == 'save':
            left = cell['left']
            text += (f' (left: {", ".join(left["files"])}; last_checkpoint '
                     f'{left["last_checkpoint"]})')
        return text
    return f'**{cell["verdict"]}**: {cell["reason"]}'


def markdown(cells: List[dict], methods: List[Method], seconds: float,
             argv: List[str]) -> str:
    """The results as Markdown: the matrix, then where each kill hit."""
    used = [c for c in COLUMNS if any(x['column'] == c for x in cells)]
    lines = [
        '| method | ' + ' | '.join(COLUMNS[c] for c in used) + ' |',
        '|---' * (len(used) + 1) + '|',
    ]
    for method in methods:
        mine = [c for c in cells if c['method'] == method.name]
        if not mine:
            continue
        row = []
        for column in used:
            here = [c for c in mine if c['column'] == column]
            if not here:
                row.append('—')
            elif len(here) == 1:
                row.append(_cell_text(here[0]))
            else:
                row.append('; '.join(f'`{c["fault"]}`: {_cell_text(c)}'
                                     for c in here))
        lines.append(f'| {method.name} | ' + ' | '.join(row) + ' |')
    common = {k.fault: k for k in _common_kills([])}
    saves = range(CHECKPOINT_INTERVAL, MAX_ITERS, CHECKPOINT_INTERVAL)
    lines += [
        '',
        f'Every run: {MAX_ITERS} iterations, checkpoints at '
        f'{", ".join(map(str, saves))} and {MAX_ITERS}. ' + ' '.join(
            f'`{k.fault}`: {k.what}.' for k in common.values()),
        '',
        '| method | schedule | event kills |',
        '|---|---|---|',
    ]
    for method in methods:
        events = [
            f'`{c["fault"]}`: {c["what"]}' for c in cells
            if c['method'] == method.name and c['fault'] not in common
        ]
        if any(c['method'] == method.name for c in cells):
            lines.append(f'| {method.name} | {method.events} | '
                         f'{"; ".join(events) or "—"} |')
    identical = sum(c['verdict'] == 'bit-identical' for c in cells)
    command = ' '.join(['python tools/analysis_tools/fault_matrix.py', *argv])
    lines += [
        '',
        f'{len(cells)} cells, {identical} bit-identical; '
        f'{seconds / 60:.1f} minutes with OMP_NUM_THREADS='
        f'{os.environ.get("OMP_NUM_THREADS", "unset")}, torch '
        f'{torch.__version__}. Command: `{command}`',
    ]
    return '\n'.join(lines) + '\n'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Kill every method\'s demo run at chosen points, resume '
        'it, compare with an uninterrupted run')
    parser.add_argument(
        '--out-dir',
        default='work_dirs/fault_matrix',
        help='work dirs, logs and the results (default: %(default)s)')
    parser.add_argument(
        '--methods',
        nargs='+',
        choices=[m.key for m in METHODS],
        default=[m.key for m in METHODS],
        help='the methods to run (default: all)')
    parser.add_argument(
        '--columns',
        nargs='+',
        choices=COLUMNS,
        default=list(COLUMNS),
        help='the kinds of kill point to run (default: all)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    # a kill armed in this shell must not reach the uninterrupted runs
    os.environ.pop(FAULT_ENV, None)
    os.environ.pop(FAULT_RANK_ENV, None)
    out_dir = osp.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    start = time.monotonic()
    data_root = generate_data(out_dir)
    methods = [m for m in METHODS if m.key in args.methods]
    cells = []
    for method in methods:
        cells += run_method(method, data_root, out_dir, args.columns)
    seconds = time.monotonic() - start
    table = markdown(cells, methods, seconds, argv)
    with open(osp.join(out_dir, 'fault_matrix.json'), 'w') as f:
        json.dump(
            dict(
                max_iters=MAX_ITERS,
                checkpoint_interval=CHECKPOINT_INTERVAL,
                img_size=IMG_SIZE,
                common_options=COMMON_OPTIONS,
                methods={
                    m.name: dict(
                        config=m.config,
                        options=m.options,
                        procs=m.procs,
                        events=m.events)
                    for m in methods
                },
                seconds=round(seconds, 1),
                torch=torch.__version__,
                omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
                cells=cells),
            f,
            indent=1)
    with open(osp.join(out_dir, 'fault_matrix.md'), 'w') as f:
        f.write(table)
    print(table)
    return 0 if all(c['verdict'] == 'bit-identical' for c in cells) else 1


if __name__ == '__main__':
    sys.exit(main())
