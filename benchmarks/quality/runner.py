# Copyright (c) gap_mm contributors. All rights reserved.
"""Run the cells of a quality grid through the ordinary tools, one after
another, resumably, and write one record per cell.

:func:`run_cell` trains a :class:`~cell.Cell` with ``tools/train.py`` (or
``tools/dist_train.sh``), evaluates the last checkpoint with
``tools/test.py``, measures the sparsity of the checkpoint with
``tools/analysis_tools/sparsity_report.py``, slims it when the cell asks,
reads the events the sparsity hooks recorded (``sparsity_events.jsonl``)
and writes ``<out_dir>/cells/<id>.json``. A cell whose record exists is
skipped, and a cell that was killed mid-training resumes from its last
checkpoint (``--resume``). Nothing here knows about any sparsity method: a
method is a config, and what its hook records is read as data.
"""
import datetime
import json
import math
import os
import os.path as osp
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import report
from cell import TASK_METRICS, Cell, format_option

#: The checkout this file lives in; tools and configs are found from here.
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: Input shape for counting a task's FLOPs (``sparsity_report.py
#: --flops-shape``); tasks without one are not counted.
TASK_FLOPS_SHAPE = {
    'det': (3, 160, 160),
    'crowded': (3, 160, 160),
    'partseg': (512, 6)
}

#: The file in a work dir where the sparsity hooks record their events, one
#: JSON object a line: ``{"iter": N, "hook": ..., "event": ..., ...}``.
EVENTS_FILE = 'sparsity_events.jsonl'


class CellFailed(RuntimeError):
    """A tool exited with an error while running a cell, or a cell cannot
    start."""


def _run(cmd: List[str], log_path: str, env: Mapping[str, str]) -> float:
    """Run ``cmd`` from the repository root, appending its output to
    ``log_path``; return the wall time."""
    start = time.time()
    with open(log_path, 'a') as log:
        log.write(f'\n$ {shlex.join(cmd)}\n')
        log.flush()
        proc = subprocess.run(
            cmd, cwd=REPO, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise CellFailed(f'{shlex.join(cmd)} exited with {proc.returncode}; '
                         f'the end of {log_path}:\n{tail}')
    return time.time() - start


def _tool_env(python: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '2')
    env['PYTHON'] = python
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, env.get('PYTHONPATH')) if p)
    return env


def _free_port() -> int:
    """A TCP port nobody listens on now, for torchrun's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _last_checkpoint(work_dir: str) -> Optional[str]:
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    with open(marker) as f:
        path = f.read().strip()
    if not osp.isabs(path):
        path = osp.join(REPO, path)
    return path if osp.isfile(path) else None


def test_metrics(test_dir: str, key: str) -> Dict[str, float]:
    """The newest record holding ``key`` that ``tools/test.py`` logged."""
    found = None
    for root, _, files in sorted(os.walk(test_dir)):
        for name in sorted(files):
            if not name.endswith('.json') or name == 'scalars.json':
                continue
            with open(osp.join(root, name)) as f:
                for line in f:
                    if key in line:
                        record = json.loads(line)
                        if key in record:
                            found = record
    if found is None:
        raise CellFailed(f'tools/test.py logged no {key!r} under {test_dir}')
    return found


def logged_scalars(work_dir: str, key: str) -> Dict[int, float]:
    """``iter -> value`` of a scalar the train loop logged (its
    ``vis_data/scalars.json`` files; unreadable lines are skipped)."""
    seen: Dict[int, float] = OrderedDict()
    for root, _, files in sorted(os.walk(work_dir)):
        if 'scalars.json' not in files or osp.basename(root) != 'vis_data':
            continue
        with open(osp.join(root, 'scalars.json')) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if key in record and 'iter' in record:
                    seen[int(record['iter'])] = float(record[key])
    return seen


def train_losses(work_dir: str) -> List[List[float]]:
    """``[iter, loss]`` pairs that the train loop logged."""
    return [[i, loss]
            for i, loss in sorted(logged_scalars(work_dir, 'loss').items())]


def read_events(work_dir: str) -> List[Dict[str, Any]]:
    """The events the sparsity hooks recorded in ``<work_dir>/``
    :data:`EVENTS_FILE`, in file order, one per ``(iter, hook, event)``: a
    resumed run records again what it repeats, and the first record is
    kept. Lines that are not a JSON object with ``iter`` and ``event`` (the
    end of a killed run) are skipped; no file, no events."""
    path = osp.join(work_dir, EVENTS_FILE)
    if not osp.isfile(path):
        return []
    seen, events = set(), []
    with open(path) as f:
        for line in f:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(event, dict) or not {'iter', 'event'} <= set(
                    event):
                continue
            key = (int(event['iter']), event.get('hook'), event['event'])
            if key not in seen:
                seen.add(key)
                events.append(event)
    return events


def mask_events(events: Iterable[Mapping[str, Any]]) -> List[int]:
    """The iterations, sorted, at which an event changed masks: a
    ``gap`` event that pruned some partition (a non-empty ``prune``), and
    every other event but ``summary``."""
    iters = set()
    for event in events:
        kind = event['event']
        if kind == 'summary' or (kind == 'gap' and not event.get('prune')):
            continue
        iters.add(int(event['iter']))
    return sorted(iters)


def event_summary(events: Iterable[Mapping[str, Any]]) -> Dict[str, Any]:
    """The ``values`` of every ``summary`` event, merged in file order."""
    values: Dict[str, Any] = OrderedDict()
    for event in events:
        if event['event'] == 'summary':
            values.update(event.get('values') or {})
    return values


def merge_summary(record: Dict[str, Any], summary: Mapping[str, Any]) -> None:
    """Add what the hooks summed up over the run (e.g. the training FLOPs of
    a method that gates channels) to ``record``, under the names they gave
    it; a name the record holds already is an error, not an overwrite."""
    clash = sorted(set(summary) & set(record))
    if clash:
        raise CellFailed(f'{record.get("id")}: the summary in {EVENTS_FILE} '
                         f'names {clash}, which the record holds already')
    record.update(summary)


def event_effects(losses: Sequence[Sequence[float]],
                  events: Iterable[int],
                  before: int = 50,
                  after: int = 30) -> List[Dict[str, Any]]:
    """Loss jump and recovery at each prune event.

    ``before_loss`` is the mean logged loss over ``(e - before, e]``,
    ``after_loss`` the highest over ``(e, e + after]``; ``recovery`` is the
    number of iterations until the logged loss is back at ``before_loss``
    (None if it never is before the next event or the end of training).
    """
    events = sorted(events)
    out = []
    for idx, event in enumerate(events):
        nxt = events[idx + 1] if idx + 1 < len(events) else math.inf
        pre = [v for i, v in losses if event - before < i <= event]
        post = [v for i, v in losses if event < i <= event + after]
        if not pre or not post:
            continue
        level = sum(pre) / len(pre)
        peak = max(post)
        recovery = next(
            (i - event for i, v in losses if event < i < nxt and v <= level),
            None)
        out.append(
            dict(
                iter=event,
                before_loss=round(level, 4),
                after_loss=round(peak, 4),
                jump=round(peak - level, 4),
                recovery=recovery))
    return out


def _git_commit() -> str:
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                              cwd=REPO,
                              capture_output=True,
                              text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def machine() -> str:
    """A one-line description of the machine the cells ran on."""
    return (f'{platform.machine()}, {os.cpu_count()} CPU cores, '
            f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "2")}')


def _check_start_checkpoints(cell: Cell) -> None:
    """Fail before training when a cell starts from a local checkpoint
    (``load_from``, an ``init_cfg.checkpoint``) that is not on disk: work
    dirs are not kept with the results, so a grid continued on another
    machine has the start cell's record but not its checkpoint."""
    for key, value in cell.all_options().items():
        if not (key == 'load_from' or key.endswith('init_cfg.checkpoint')):
            continue
        if not isinstance(value, str) or '://' in value:
            continue
        path = value if osp.isabs(value) else osp.join(REPO, value)
        if not osp.isfile(path):
            raise CellFailed(
                f'cell {cell.id} starts from {key}={value}, which is not on '
                'disk; train the cell that writes it again (delete its '
                'record under <results>/<grid>/cells/ and re-run the grid) '
                'or copy the checkpoint there')


def run_cell(cell: Cell,
             out_dir: str,
             work_root: str,
             python: str = sys.executable,
             grid: str = '') -> Dict[str, Any]:
    """Train, evaluate and measure one cell; write ``<out_dir>/cells/<id>
    .json`` and return its record. A cell whose record exists is not run
    again."""
    record_path = osp.join(out_dir, 'cells', f'{cell.id}.json')
    if osp.isfile(record_path):
        with open(record_path) as f:
            return json.load(f)
    twin = _same_cell_elsewhere(cell, out_dir)
    if twin is not None:
        # the measurement is the same run's; the labels are this grid's
        twin.update(cell.labels())
        twin['grid'] = grid
        _write_record(twin, record_path)
        return twin
    _check_start_checkpoints(cell)
    metric_key, _, extra_keys = TASK_METRICS[cell.task]
    work_dir = osp.join(work_root, cell.id)
    os.makedirs(work_dir, exist_ok=True)
    log_path = osp.join(work_dir, 'harness.log')
    env = _tool_env(python)
    options = [format_option(k, v) for k, v in cell.all_options().items()]

    if cell.procs == 1:
        train_cmd = [python, 'tools/train.py', cell.config]
    else:
        train_cmd = [
            'bash', 'tools/dist_train.sh', cell.config,
            str(cell.procs)
        ]
        env['PORT'] = str(_free_port())
        # the processes share the cores: more threads than cores makes
        # OpenMP spin (2 processes x 2 threads on 2 cores: 10x slower)
        env['OMP_NUM_THREADS'] = str(
            max(1,
                int(env['OMP_NUM_THREADS']) // cell.procs))
    train_cmd += ['--work-dir', work_dir]
    if _last_checkpoint(work_dir):
        train_cmd.append('--resume')
    train_cmd += ['--cfg-options', *options]
    train_s = _run(train_cmd, log_path, env)
    ckpt = _last_checkpoint(work_dir)
    if ckpt is None:
        raise CellFailed(f'{cell.id}: training wrote no checkpoint in '
                         f'{work_dir}')

    test_dir = osp.join(work_dir, 'test')
    test_cmd = [
        python, 'tools/test.py', cell.config, ckpt, '--work-dir', test_dir,
        '--cfg-options', *options
    ]
    test_s = _run(test_cmd, log_path, env)
    metrics = test_metrics(test_dir, metric_key)

    sparsity = dict(prunable=dict(sparsity=None, numel=None))
    if cell.report:
        report_json = osp.join(work_dir, 'sparsity_report.json')
        report_cmd = [
            python, 'tools/analysis_tools/sparsity_report.py',
            cell.report_config or cell.config, ckpt, '--out-json', report_json
        ]
        if cell.task in TASK_FLOPS_SHAPE:
            report_cmd += [
                '--flops-shape', *map(str, TASK_FLOPS_SHAPE[cell.task])
            ]
        if cell.report_options:
            report_cmd += [
                '--cfg-options', *(format_option(k, v)
                                   for k, v in cell.report_options.items())
            ]
        _run(report_cmd, log_path, env)
        with open(report_json) as f:
            sparsity = json.load(f)['reports'][0]

    slim = _slim_cell(cell, ckpt, work_dir, options, log_path, env,
                      python) if cell.slim else None

    losses = train_losses(work_dir)
    events = read_events(work_dir)
    record = OrderedDict(
        id=cell.id,
        grid=grid,
        **cell.labels(),
        options=cell.all_options(),
        metric=metric_key,
        value=float(metrics[metric_key]),
        metrics={
            k: float(metrics[k])
            for k in (metric_key, *extra_keys) if k in metrics
        },
        measured_sparsity=sparsity['prunable']['sparsity'],
        flops=sparsity.get('flops'),
        slimmed=slim,
        prunable_weights=sparsity['prunable']['numel'],
        train_seconds=round(train_s, 1),
        test_seconds=round(test_s, 1),
        final_loss=losses[-1][1] if losses else None,
        events=event_effects(losses, mask_events(events)),
        losses=losses,
        commands=[shlex.join(train_cmd),
                  shlex.join(test_cmd)],
        commit=_git_commit(),
        date=datetime.date.today().isoformat(),
        machine=machine())
    merge_summary(record, event_summary(events))
    _write_record(record, record_path)
    return record


def _slim_cell(cell: Cell, ckpt: str, work_dir: str, options: List[str],
               log_path: str, env: Mapping[str, str],
               python: str) -> Dict[str, Any]:
    """Slim the cell's checkpoint and evaluate the smaller model."""
    slim_dir = osp.join(work_dir, 'slim')
    summary = osp.join(slim_dir, 'slim.json')
    cmd = [
        python, 'tools/model_converters/slim_model.py', cell.config, ckpt,
        slim_dir, '--out-json', summary
    ]
    if cell.task in TASK_FLOPS_SHAPE:
        cmd += ['--input-shape', *map(str, TASK_FLOPS_SHAPE[cell.task])]
    _run(cmd + ['--cfg-options', *options], log_path, env)
    with open(summary) as f:
        info = json.load(f)
    test_dir = osp.join(work_dir, 'test_slim')
    # the slimmed config holds the merged options already
    _run([
        python, 'tools/test.py', info['config'], info['checkpoint'],
        '--work-dir', test_dir
    ], log_path, env)
    metric_key = TASK_METRICS[cell.task][0]
    return dict(
        value=float(test_metrics(test_dir, metric_key)[metric_key]),
        params=info['params'],
        flops=info['flops'],
        channels_removed=sum(r['removed'] for r in info['rows']),
        channels=sum(r['channels'] for r in info['rows']),
        max_output_difference=info['max_output_difference'])


def _write_record(record: Mapping[str, Any], path: str) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def _same_cell_elsewhere(cell: Cell, out_dir: str) -> Optional[Dict[str, Any]]:
    """The record of the same run (config, ``--cfg-options``, processes)
    that another grid beside ``out_dir`` has finished, marked with where it
    comes from; None if there is none. Grids share their dense twins this
    way instead of training them again."""
    root, here = osp.split(osp.normpath(out_dir))
    if not osp.isdir(root):
        return None
    want = (cell.config, cell.all_options(), cell.procs)
    for grid in sorted(os.listdir(root)):
        path = osp.join(root, grid, 'cells', f'{cell.id}.json')
        if grid == here or not osp.isfile(path):
            continue
        with open(path) as f:
            record = json.load(f)
        if (record['config'], record['options'], record.get('procs',
                                                            1)) == want:
            record['reused_from'] = record.get('reused_from') or osp.relpath(
                path, root)
            return record
    return None


def run_grid(cells: Sequence[Cell],
             out_dir: str,
             work_root: str,
             python: str = sys.executable,
             grid: str = '',
             log=lambda msg: print(msg, file=sys.stderr, flush=True),
             keep_going: bool = False,
             report_cells: Optional[Sequence[Cell]] = None
             ) -> List[Dict[str, Any]]:
    """Run every cell not yet done, in order, printing progress and the
    estimated time left; then write the outputs from the finished cells of
    ``report_cells`` (default ``cells``: pass the whole grid when ``cells``
    is a subset, so that running a few cells does not shrink the grid's
    table to them). Returns the records written."""
    ids = [c.id for c in cells]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f'the grid has duplicate cells: {dup}')
    done = [
        c for c in cells
        if osp.isfile(osp.join(out_dir, 'cells', f'{c.id}.json'))
    ]
    todo = [c for c in cells if c not in done]
    log(f'[grid {grid}] {len(cells)} cells: {len(done)} done, '
        f'{len(todo)} to run')
    spent, units = 0.0, 0.0
    failures = []
    for n, cell in enumerate(todo, 1):
        left = sum(c.budget for c in todo[n - 1:])
        eta = '' if not units else \
            f', about {_hms(spent / units * left)} left'
        log(f'[grid {grid}] {len(done) + n}/{len(cells)} {cell.id}{eta}')
        start = time.time()
        try:
            record = run_cell(cell, out_dir, work_root, python, grid)
        except CellFailed as err:
            if not keep_going:
                raise
            failures.append(cell.id)
            log(f'[grid {grid}] FAILED {cell.id}: {err}')
            continue
        spent += time.time() - start
        units += cell.budget
        sparsity = record['measured_sparsity']
        log(f'[grid {grid}] {cell.id}: {TASK_METRICS[cell.task][1]} '
            f'{record["value"]:.4f}, sparsity ' +
            (f'{100 * sparsity:.2f}%' if sparsity is not None else 'n/a') +
            f' ({_hms(time.time() - start)})')
    records = report.load_records(
        out_dir, cells if report_cells is None else report_cells)
    report.write_outputs(records, out_dir, log)
    if failures:
        raise CellFailed(f'{len(failures)} cells failed: {failures}')
    return records


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f'{h}h{rest // 60:02d}m' if h else f'{rest // 60}m{rest % 60:02d}s'
