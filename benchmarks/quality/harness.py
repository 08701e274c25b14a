# Copyright (c) gap_mm contributors. All rights reserved.
"""Train and evaluate a grid of runs through the ordinary tools, one cell
after another, resumably, and tabulate what they measured.

A *cell* is one training run: a config, the ``--cfg-options`` that make it
differ from the config as shipped (sparsity, seed, budget, schedule), and
the labels that place it in the results table (task, method, sparsity,
seed). :func:`run_cell` trains it with ``tools/train.py``, evaluates the
last checkpoint with ``tools/test.py``, measures the sparsity of the
checkpoint with ``tools/analysis_tools/sparsity_report.py`` and writes one
JSON file per cell; a cell whose JSON exists is skipped, and a cell that was
killed mid-training resumes from its last checkpoint (``--resume``).

:func:`write_outputs` turns the cell files into ``results.json``,
``results.csv``, ``table.md`` and ``plot.png``. Nothing here knows about any
sparsity method: a method is a config.
"""
import csv
import dataclasses
import datetime
import json
import math
import os
import os.path as osp
import platform
import re
import shlex
import socket
import subprocess
import sys
import time
from collections import OrderedDict, defaultdict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

#: The checkout this file lives in; tools and configs are found from here.
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: Per task: the metric of the table, its label, and the other metrics kept.
TASK_METRICS = {
    'det':
    ('coco/bbox_mAP', 'bbox mAP', ('coco/bbox_mAP_50', 'coco/bbox_mAP_75')),
    'partseg':
    ('part_seg/instance_miou', 'instance mIoU', ('part_seg/class_miou', )),
    'toy': ('toy/mse', 'MSE', ()),
}

#: Input shape for counting a task's FLOPs (``sparsity_report.py
#: --flops-shape``); tasks without one are not counted.
TASK_FLOPS_SHAPE = {'det': (3, 160, 160), 'partseg': (512, 6)}

_EVENT_RE = re.compile(r'GaP at iteration (\d+): prune partitions \[([\d, ]*)'
                       r'\], grow partitions \[([\d, ]*)\]')


@dataclasses.dataclass
class Cell:
    """One training run of a grid.

    Args:
        task (str): ``'det'``, ``'partseg'`` or ``'toy'`` (see
            :data:`TASK_METRICS`).
        method (str): The row label of the results table, e.g. ``'C-GaP'``.
        config (str): Config path, relative to the repository root.
        options (dict): ``--cfg-options`` for ``tools/train.py`` (and the
            data-related ones for ``tools/test.py``), as Python values.
        seed (int): ``randomness.seed``.
        sparsity (float | str | None): The column: a target sparsity, an
            N:M pattern such as ``'2:4'``, or None for dense.
        distribution (str | None): ``'uniform'``, ``'erk'`` ... or None.
        budget (float): Training length relative to the task's default.
        study (str): Which part of the report the cell belongs to.
        variant (str): What else differs (a schedule, a grow rule);
            part of the id. Defaults to ''.
        report_config (str, optional): The config whose prunable set the
            sparsity is measured over (so a dense run is measured over the
            same layers as the sparse ones). Defaults to ``config``.
        procs (int): Training processes: more than 1 trains through
            ``tools/dist_train.sh CONFIG procs`` (gloo on the CPU), as a user
            launches P-GaP. Evaluation is one process either way.
            Defaults to 1.
        slim (bool): Also slim the checkpoint
            (``tools/model_converters/slim_model.py``: the all-zero channels
            cut out), evaluate the smaller model with ``tools/test.py`` and
            record its FLOPs and parameters. Defaults to False.
        report (bool): Measure the checkpoint's sparsity over the prunable
            set of ``report_config`` (``sparsity_report.py``); False for
            methods without weight masks (SCS, whose sparsity is its
            FLOPs). Defaults to True.
        report_options (dict): ``--cfg-options`` of that report, for a
            cell that trained with another prunable set than
            ``report_config``'s (the layers an N:M pattern cannot prune,
            excluded). Defaults to none.
    """
    task: str
    method: str
    config: str
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    sparsity: Any = None
    distribution: Optional[str] = None
    budget: float = 1.0
    study: str = 'main'
    variant: str = ''
    report_config: Optional[str] = None
    procs: int = 1
    slim: bool = False
    report: bool = True
    report_options: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def id(self) -> str:
        parts = [self.task, _slug(self.method)]
        if self.sparsity is not None:
            parts.append(_slug(str(self.sparsity)))
        if self.distribution:
            parts.append(self.distribution)
        if self.budget != 1:
            parts.append(f'b{self.budget:g}')
        if self.variant:
            parts.append(_slug(self.variant))
        if self.procs != 1:
            parts.append(f'p{self.procs}')
        parts.append(f's{self.seed}')
        return '-'.join(parts)

    def all_options(self) -> Dict[str, Any]:
        opts = OrderedDict(self.options)
        opts['randomness.seed'] = self.seed
        return opts


def _slug(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9.]+', '', text.replace(':', 'of')).lower()


def format_option(key: str, value: Any) -> str:
    """One ``KEY=VALUE`` for mmengine's ``DictAction``."""
    if isinstance(value, bool):
        text = str(value)
    elif isinstance(value, (list, tuple)):
        inner = ','.join(format_option('', v)[1:] for v in value)
        text = f'[{inner}]' if isinstance(value, list) else f'({inner})'
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)
    if not text or any(c.isspace() for c in text):
        raise ValueError(f'--cfg-options value {value!r} of {key} cannot be '
                         f'passed on a command line')
    return f'{key}={text}'


# ----------------------------------------------------------------- running
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


def mean_scalar(work_dir: str, key: str) -> Optional[float]:
    """The mean of a scalar over the train loop's logged values, or None
    when none was logged. Each logged value is the mean of the last
    ``log_processor.window_size`` iterations (10): with the grid's logging
    every 10 iterations that is every iteration of the run."""
    values = logged_scalars(work_dir, key)
    return sum(values.values()) / len(values) if values else None


def prune_events(work_dir: str) -> List[int]:
    """Iterations (1-based, the step after which masks changed) at which a
    GaP-style hook pruned some partitions, parsed from the train logs."""
    events = set()
    for root, _, files in os.walk(work_dir):
        for name in files:
            if name.endswith('.log'):
                with open(osp.join(root, name), errors='replace') as f:
                    for match in _EVENT_RE.finditer(f.read()):
                        if match.group(2).strip():
                            events.add(int(match.group(1)))
    return sorted(e for e in events if e > 0)


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
        twin.update((k, v) for k, v in dataclasses.asdict(cell).items()
                    if k != 'options')
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

    report = dict(prunable=dict(sparsity=None, numel=None))
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
            report = json.load(f)['reports'][0]

    slim = _slim_cell(cell, ckpt, work_dir, options, log_path, env,
                      python) if cell.slim else None

    losses = train_losses(work_dir)
    record = OrderedDict(
        id=cell.id,
        grid=grid,
        **{
            k: v
            for k, v in dataclasses.asdict(cell).items() if k != 'options'
        },
        options=cell.all_options(),
        metric=metric_key,
        value=float(metrics[metric_key]),
        metrics={
            k: float(metrics[k])
            for k in (metric_key, *extra_keys) if k in metrics
        },
        measured_sparsity=report['prunable']['sparsity'],
        flops=report.get('flops'),
        slimmed=slim,
        # SCS: the FLOPs the training steps computed over the full model's
        # (mean over the run; what a restructured network would spend)
        train_flops=mean_scalar(work_dir, 'scs_step_flops'),
        prunable_weights=report['prunable']['numel'],
        train_seconds=round(train_s, 1),
        test_seconds=round(test_s, 1),
        final_loss=losses[-1][1] if losses else None,
        events=event_effects(losses, prune_events(work_dir)),
        losses=losses,
        commands=[shlex.join(train_cmd),
                  shlex.join(test_cmd)],
        commit=_git_commit(),
        date=datetime.date.today().isoformat(),
        machine=machine())
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


def _flops_saved(record: Mapping[str, Any]) -> float:
    """The FLOPs a record's model saves: measured on the slimmed model
    when the cell was slimmed, else the zero filters' lower bound."""
    slim = record.get('slimmed')
    if slim and all(slim.get('flops') or [None]):
        before, after = slim['flops']
        return 1 - after / before
    return (record.get('flops') or {}).get('saved_fraction', 0.0)


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
    records = load_records(out_dir,
                           cells if report_cells is None else report_cells)
    write_outputs(records, out_dir, log)
    if failures:
        raise CellFailed(f'{len(failures)} cells failed: {failures}')
    return records


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f'{h}h{rest // 60:02d}m' if h else f'{rest // 60}m{rest % 60:02d}s'


def load_records(out_dir: str,
                 cells: Optional[Sequence[Cell]] = None) -> List[dict]:
    """The finished cell records, in grid order (all of them when ``cells``
    is None)."""
    folder = osp.join(out_dir, 'cells')
    if not osp.isdir(folder):
        return []
    names = [f'{c.id}.json' for c in cells] if cells is not None else \
        sorted(os.listdir(folder))
    records = []
    for name in names:
        path = osp.join(folder, name)
        if name.endswith('.json') and osp.isfile(path):
            with open(path) as f:
                records.append(json.load(f))
    return records


# ----------------------------------------------------------------- outputs
def _column(sparsity: Any) -> str:
    if sparsity is None:
        return 'dense'
    if isinstance(sparsity, str):
        return sparsity
    return f'{100 * sparsity:g}%'


def _row(record: Mapping[str, Any], with_budget: bool = True) -> str:
    dist = record.get('distribution')
    row = record['method'] + (f' ({dist})' if dist else '')
    if record.get('variant'):
        row += f' [{record["variant"]}]'
    if record.get('procs', 1) != 1:
        row += f' on {record["procs"]} processes'
    if with_budget and record.get('budget', 1) != 1:
        row += f' x{record["budget"]:g} budget'
    return row


def aggregate(records: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Group the records by (study, task, row, column) over seeds."""
    groups: Dict[tuple, List[Mapping[str, Any]]] = OrderedDict()
    for rec in records:
        key = (rec.get('study', 'main'), rec['task'], _row(rec),
               _column(rec.get('sparsity')), rec.get('budget', 1))
        groups.setdefault(key, []).append(rec)
    out = []
    for (study, task, row, column, budget), recs in groups.items():
        values = [r['value'] for r in recs]
        out.append(
            dict(
                study=study,
                task=task,
                row=row,
                series=_row(recs[0], with_budget=False),
                column=column,
                budget=budget,
                method=recs[0]['method'],
                distribution=recs[0].get('distribution'),
                sparsity=recs[0].get('sparsity'),
                n=len(values),
                mean=sum(values) / len(values),
                min=min(values),
                max=max(values),
                seeds=[r['seed'] for r in recs],
                measured_sparsity=sum(r['measured_sparsity'] or 0.0
                                      for r in recs) / len(recs),
                train_seconds=sum(r['train_seconds']
                                  for r in recs) / len(recs),
                flops_saved=sum(_flops_saved(r) for r in recs) / len(recs),
                slim_mean=sum(r['slimmed']['value'] for r in recs) /
                len(recs) if all(r.get('slimmed') for r in recs) else None,
                train_flops=sum(r['train_flops'] for r in recs) /
                len(recs) if all(r.get('train_flops') is not None
                                 for r in recs) else None))
    return out


def _dense_reference(groups: Sequence[Mapping[str, Any]], study: str,
                     task: str, budget: float) -> Optional[Mapping]:
    for g in groups:
        if (g['study'], g['task'], g['column'],
                g['budget']) == (study, task, 'dense', budget):
            return g
    return None


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """Markdown tables, one per (study, task): a row per method, a column
    per sparsity, each cell ``mean [min, max] (Δ dense)`` over the seeds."""
    groups = aggregate(records)
    lines: List[str] = []
    keys = list(OrderedDict.fromkeys((g['study'], g['task']) for g in groups))
    for study, task in keys:
        mine = [g for g in groups if (g['study'], g['task']) == (study, task)]
        columns = list(OrderedDict.fromkeys(g['column'] for g in mine))
        columns.sort(key=lambda c: (c != 'dense', c))
        # dense first, then each budget's rows in grid order
        order = {}
        for g in mine:
            order.setdefault(g['row'],
                             (g['budget'], g['column'] != 'dense', len(order)))
        rows = sorted(order, key=order.get)
        label = TASK_METRICS[task][1]
        lines.append(f'### {study}: {task} ({label}; mean [min, max] over '
                     f'seeds, n = seeds, Δ = points vs dense at the same '
                     f'budget)')
        lines.append('')
        lines.append('| method | ' + ' | '.join(columns) + ' |')
        lines.append('|---|' + '---|' * len(columns))
        for row in rows:
            cells = []
            for column in columns:
                g = next((g for g in mine
                          if g['row'] == row and g['column'] == column), None)
                if g is None:
                    cells.append('')
                    continue
                text = f'{g["mean"]:.3f}'
                if g['n'] > 1:
                    text += f' [{g["min"]:.3f}, {g["max"]:.3f}]'
                text += f' n={g["n"]}'
                ref = _dense_reference(groups, study, task, g['budget'])
                if ref is not None and column != 'dense':
                    text += f' ({100 * (g["mean"] - ref["mean"]):+.1f})'
                if g['flops_saved'] >= 0.001:
                    text += f', FLOPs -{100 * g["flops_saved"]:.1f}%'
                if g.get('slim_mean') is not None:
                    text += f' (slimmed: {g["slim_mean"]:.3f})'
                if g.get('train_flops') is not None:
                    text += (f', training FLOPs '
                             f'-{100 * (1 - g["train_flops"]):.1f}%')
                cells.append(text)
            lines.append(f'| {row} | ' + ' | '.join(cells) + ' |')
        lines.append('')
    return '\n'.join(lines)


def write_outputs(records: Sequence[Mapping[str, Any]],
                  out_dir: str,
                  log=lambda msg: print(msg, file=sys.stderr, flush=True)
                  ) -> bool:
    """``results.json`` (every cell, without loss curves), ``results.csv``,
    ``table.md`` and ``plot.png`` in ``out_dir``. Returns whether the plot
    was written; when there is nothing to plot, says so through ``log``
    and removes an older ``plot.png``, which would show other cells than
    the table."""
    os.makedirs(out_dir, exist_ok=True)
    slim = [{k: v for k, v in r.items() if k != 'losses'} for r in records]
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(dict(cells=slim, groups=aggregate(records)), f, indent=1)
    fields = [
        'id', 'study', 'task', 'method', 'distribution', 'sparsity', 'budget',
        'variant', 'seed', 'metric', 'value', 'measured_sparsity',
        'train_seconds', 'final_loss', 'commit', 'date'
    ]
    with open(osp.join(out_dir, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
        writer.writeheader()
        for rec in slim:
            writer.writerow(rec)
    with open(osp.join(out_dir, 'table.md'), 'w') as f:
        f.write(format_table(records))
    path = osp.join(out_dir, 'plot.png')
    if records and plot(records, path):
        return True
    stale = osp.isfile(path)
    if stale:
        os.remove(path)
    log(f'no plot in {out_dir}: no finished cell at the default budget '
        f'and no budget study' + ('; removed the older plot.png' if stale
                                  else ''))
    return False


def _x(column: str) -> float:
    """Plot position of a table column: its sparsity, N:M as 1 - N/M, a
    FLOPs target as the FLOPs it removes."""
    if column.startswith('FLOPs '):
        return 1 - float(column.split()[1].rstrip('%')) / 100
    if column.endswith('%'):
        return float(column[:-1]) / 100
    n, m = (int(v) for v in column.split(':'))
    return 1 - n / m


def _plot_sparsity(ax, mine, title, ylabel) -> None:
    """One panel: the metric against sparsity at the task's own budget,
    a line per method (min-max bars), dense as a band."""
    lines = defaultdict(list)
    for g in mine:
        if g['column'] == 'dense':
            ax.axhspan(g['min'], g['max'], color='0.85', zorder=0)
            ax.axhline(
                g['mean'],
                color='0.3',
                lw=1,
                ls='--',
                label=f'{g["row"]} (band: min-max)')
        else:
            lines[g['row']].append(g)
    for row, gs in lines.items():
        gs.sort(key=lambda g: _x(g['column']))
        xs = [_x(g['column']) for g in gs]
        ys = [g['mean'] for g in gs]
        err = [[g['mean'] - g['min'] for g in gs],
               [g['max'] - g['mean'] for g in gs]]
        ax.errorbar(xs, ys, yerr=err, marker='o', capsize=3, label=row)
    ticks = sorted({_x(g['column']) for g in mine if g['column'] != 'dense'})
    ax.set_xticks(ticks)
    ax.set_xticklabels([
        next(g['column'] for g in mine
             if g['column'] != 'dense' and _x(g['column']) == t) for t in ticks
    ])
    ax.set_xlabel('sparsity of the prunable weights')
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _plot_budget(ax, mine, title, ylabel) -> None:
    """One panel: the metric against the training budget, a line per
    method and sparsity (min-max bars)."""
    lines = defaultdict(list)
    for g in mine:
        label = g['series'] + ('' if g['column'] == 'dense' else
                               f' {g["column"]}')
        lines[label].append(g)
    for label, gs in lines.items():
        if len({g['budget'] for g in gs}) < 2:
            continue
        gs.sort(key=lambda g: g['budget'])
        ax.errorbar([g['budget'] for g in gs], [g['mean'] for g in gs],
                    yerr=[[g['mean'] - g['min'] for g in gs],
                          [g['max'] - g['mean'] for g in gs]],
                    marker='o',
                    capsize=3,
                    ls='--' if label.startswith('dense') else '-',
                    label=label)
    budgets = sorted({g['budget'] for g in mine})
    ax.set_xscale('log', base=2)
    ax.set_xticks(budgets)
    ax.set_xticklabels([f'{b:g}x' for b in budgets])
    ax.set_xlabel("training budget (x the task's default iterations)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot(records: Sequence[Mapping[str, Any]], path: str) -> bool:
    """The metric against sparsity (one panel per study and task, at the
    default budget) and, where a study varies the budget, against the
    budget. Returns False, writing nothing, when no record makes a panel
    (every one at a single budget other than 1)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    groups = aggregate(records)
    panels = []
    keys = OrderedDict.fromkeys((g['study'], g['task']) for g in groups)
    for study, task in keys:
        mine = [g for g in groups if (g['study'], g['task']) == (study, task)]
        ylabel = TASK_METRICS[task][1]
        at_one = [g for g in mine if g['budget'] == 1]
        if at_one:
            panels.append((_plot_sparsity, at_one, f'{study}: {task}', ylabel))
        if len({g['budget'] for g in mine}) > 1:
            panels.append(
                (_plot_budget, mine, f'{study}: {task}, budget', ylabel))
    if not panels:
        return False
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (draw, mine, title, ylabel) in zip(axes[0], panels):
        draw(ax, mine, title, ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
