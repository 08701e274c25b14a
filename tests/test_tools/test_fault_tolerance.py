# Copyright (c) gap_mm authors. All rights reserved.
"""Kills, as a user meets them, on real processes: a training process
killed in mid-checkpoint-write, truncated checkpoints handed to the tools,
and ``tools/dist_train.sh`` killed with SIGKILL or losing a rank.

The toy config of ``toy_cfg/`` trains in seconds; the launcher tests run 2
gloo workers. See docs/en/advanced_guides/fault_tolerance.md.
"""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from gap_mm.checkpoint import checkpoint_problem, load_checkpoint
from gap_mm.testing.e2e import (checkpoint_differences, free_port,
                                run_tool)
from gap_mm.testing.faults import FAULT_ENV, MARKER, parse_fault

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOY_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'toy_cfg')
TOY_CFG = osp.join(TOY_DIR, 'toy_config.py')
TIMEOUT = 180
#: The toy config's imports with the kill points of gap_mm.testing.faults.
FAULT_IMPORTS = dict(
    imports=['gap_toy_launcher_module', 'gap_mm', 'gap_mm.testing.faults'],
    allow_failed_imports=False)


def _run(cmd, cwd, check=True, **env):
    return run_tool([str(c) for c in cmd],
                    str(cwd), [REPO, TOY_DIR],
                    check=check,
                    timeout=TIMEOUT,
                    PORT=str(free_port()),
                    **env)


def _config(tmp_path, name, extra):
    path = tmp_path / f'{name}.py'
    path.write_text(f'_base_ = {TOY_CFG!r}\n{extra}')
    return str(path)


def _train_py(*args):
    return [sys.executable, osp.join(REPO, 'tools', 'train.py'), *args]


@pytest.fixture(scope='module')
def killed_mid_save(tmp_path_factory):
    """A run SIGKILLed while writing iter_4.pth, max_keep_ckpts=1."""
    tmp = tmp_path_factory.mktemp('killed')
    cfg = _config(
        tmp, 'kill_cfg', f'custom_imports = {FAULT_IMPORTS!r}\n'
        'default_hooks = dict(checkpoint=dict(interval=2, '
        'max_keep_ckpts=1))\n')
    work_dir = tmp / 'work'
    # half of iter_4.pth written, then SIGKILL
    proc = _run(
        _train_py(cfg, '--work-dir', work_dir),
        tmp,
        check=False,
        **{FAULT_ENV: 'save:4'})
    return tmp, cfg, str(work_dir), proc


def test_kill_mid_checkpoint_write_keeps_previous(killed_mid_save):
    _, _, work_dir, proc = killed_mid_save
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    iter_2 = osp.join(work_dir, 'iter_2.pth')
    assert checkpoint_problem(iter_2) is None
    assert load_checkpoint(iter_2)['meta']['iter'] == 2
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == iter_2
    assert not osp.exists(osp.join(work_dir, 'iter_4.pth'))
    # the half-written temporary file is what the kill left
    temps = [n for n in os.listdir(work_dir) if n.startswith('.iter_4.pth')]
    assert len(temps) == 1


def test_resume_after_kill_mid_save(killed_mid_save, tmp_path):
    _, _, work_dir, _ = killed_mid_save
    proc = _run(_train_py(TOY_CFG, '--work-dir', work_dir, '--resume'),
                tmp_path)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 2' in log
    assert load_checkpoint(osp.join(work_dir,
                                    'iter_4.pth'))['meta']['iter'] == 4
    assert [n for n in os.listdir(work_dir) if n.startswith('.')] == []


# --- kills of a sparse run, resumed bit for bit -----------------------------

#: SET on the toy model: drop and grow at 2, 4, 6 and 8 of 10 iterations, a
#: checkpoint every 4. Its masks cannot be told from the weights (a regrown
#: weight is 0 at its event), so a resume must restore them.
SPARSE_TOY = f"""custom_imports = {FAULT_IMPORTS!r}
train_cfg = dict(max_iters=10, val_interval=100)
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(type='SETHook', sparsity=0.5, interval=2, end=8, drop_fraction=0.5)
]
default_hooks = dict(checkpoint=dict(interval=4))
"""


@pytest.fixture(scope='module')
def sparse_toy(tmp_path_factory):
    """The config, and iter_8.pth and iter_10.pth of an uninterrupted
    run."""
    tmp = tmp_path_factory.mktemp('sparse_toy')
    cfg = _config(tmp, 'sparse_toy', SPARSE_TOY)
    _run(_train_py(cfg, '--work-dir', tmp / 'straight'), tmp)
    return cfg, {
        n: load_checkpoint(str(tmp / 'straight' / f'iter_{n}.pth'))
        for n in (8, 10)
    }


@pytest.mark.parametrize('fault', ['step:5', 'masks:6'])
def test_killed_sparse_run_resumes_bit_identical(sparse_toy, tmp_path,
                                                 fault):
    """SIGKILL inside the optimizer step of iteration 6 (the weights moved,
    not yet masked again) or inside the drop and grow for step 6 (the masks
    changed, the optimizer state there not yet zeroed or reset):
    ``--resume`` restarts from iter_4.pth and ends bit-identical to the
    uninterrupted run."""
    cfg, straight = sparse_toy
    work_dir = tmp_path / 'work'
    proc = _run(
        _train_py(cfg, '--work-dir', work_dir),
        tmp_path,
        check=False,
        **{FAULT_ENV: fault})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert f'{MARKER} {fault} (rank 0)' in proc.stderr
    log = proc.stdout + proc.stderr
    assert 'SET at iteration 4: drop and grow' in log
    # killed before the event of step 6 was logged
    assert 'SET at iteration 6' not in log
    assert sorted(n for n in os.listdir(work_dir)
                  if n.endswith('.pth')) == ['iter_4.pth']

    proc = _run(_train_py(cfg, '--work-dir', work_dir, '--resume'), tmp_path)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 4' in log
    assert 'SET at iteration 6: drop and grow' in log
    resumed = load_checkpoint(str(work_dir / 'iter_10.pth'))
    assert checkpoint_differences(straight[10], resumed) == []


def test_checkpoint_differences_names_what_differs(sparse_toy):
    _, straight = sparse_toy
    last, before = straight[10], straight[8]
    differences = checkpoint_differences(last, before)
    for path in ("['state_dict']['linear1.weight']", "['gap_state']['step']",
                 "['meta']['iter']",
                 "['message_hub']['log_scalars']['train/loss'][0]"):
        assert path in differences
    # one flipped bit of one packed mask
    masks = last['gap_state']['sparsifier']['masks']
    name = sorted(masks)[0]
    changed = dict(last, gap_state=dict(last['gap_state']))
    changed['gap_state']['sparsifier'] = dict(
        last['gap_state']['sparsifier'],
        masks=dict(masks, **{name: dict(masks[name])}))
    packed = masks[name]['packed'].clone()
    packed[0] ^= 1
    changed['gap_state']['sparsifier']['masks'][name]['packed'] = packed
    assert checkpoint_differences(last, changed) == [
        f"['gap_state']['sparsifier']['masks'][{name!r}]['packed']"
    ]


@pytest.mark.parametrize('value', ['masks', 'masks:', 'mask:6', 'save:x'])
def test_parse_fault_rejects(value):
    with pytest.raises(ValueError, match='expected <point>:<n>'):
        parse_fault(value)


def _truncate(path):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """iter_2.pth and iter_4.pth of the toy config, one process."""
    tmp = tmp_path_factory.mktemp('trained')
    work_dir = tmp / 'work'
    _run(_train_py(TOY_CFG, '--work-dir', work_dir), tmp)
    return str(work_dir)


def test_auto_resume_skips_truncated_newest(trained, tmp_path):
    work_dir = str(tmp_path / 'work')
    os.makedirs(work_dir)
    for name in ('iter_2.pth', 'iter_4.pth', 'last_checkpoint'):
        with open(osp.join(trained, name), 'rb') as src, open(
                osp.join(work_dir, name), 'wb') as dst:
            dst.write(src.read())
    iter_4 = osp.join(work_dir, 'iter_4.pth')
    _truncate(iter_4)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(iter_4)
    proc = _run(
        _train_py(TOY_CFG, '--work-dir', work_dir, '--resume',
                  '--cfg-options', 'train_cfg.max_iters=4'), tmp_path)
    log = proc.stdout + proc.stderr
    assert f'Auto-resume skips {iter_4} (named in' in log
    assert 'is truncated' in log
    assert 'resumed epoch: 0, iter: 2' in log
    assert checkpoint_problem(iter_4) is None  # written again, whole


@pytest.mark.parametrize('tool', ['resume', 'load_from', 'test'])
def test_truncated_explicit_checkpoint_one_line(trained, tmp_path, tool):
    half = str(tmp_path / 'iter_4.pth')
    with open(osp.join(trained, 'iter_4.pth'), 'rb') as f:
        data = f.read()
    with open(half, 'wb') as f:
        f.write(data[:len(data) // 2])
    work = str(tmp_path / 'w')
    cmd = {
        'resume': _train_py(TOY_CFG, '--work-dir', work, '--resume', half),
        'load_from': _train_py(TOY_CFG, '--work-dir', work,
                               '--cfg-options', f'load_from={half}'),
        'test': [sys.executable,
                 osp.join(REPO, 'tools', 'test.py'), TOY_CFG, half,
                 '--work-dir', work],
    }[tool]
    proc = _run(cmd, tmp_path, check=False)
    what = {'resume': '--resume', 'load_from': 'load_from',
            'test': 'checkpoint'}[tool]
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert f'error: {what} {half} is truncated' in proc.stderr


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_checkpoint_of_another_model_stops(trained, tmp_path, tool):
    """MMEngine loads with strict=False: this trained from scratch, or
    tested random weights with exit code 0."""
    other = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict={'conv.weight': torch.zeros(1)}), other)
    work = str(tmp_path / 'w')
    cmd = (_train_py(TOY_CFG, '--work-dir', work, '--cfg-options',
                     f'load_from={other}') if tool == 'train' else [
                         sys.executable,
                         osp.join(REPO, 'tools', 'test.py'), TOY_CFG, other,
                         '--work-dir', work
                     ])
    proc = _run(cmd, tmp_path, check=False)
    what = 'load_from' if tool == 'train' else 'checkpoint'
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert (f'error: {what} {other} holds 0 of the 9 tensors of the model '
            '(LauncherToyModel): 9 are missing') in proc.stderr


def test_load_from_same_model_logs_the_match(trained, tmp_path):
    proc = _run(
        _train_py(TOY_CFG, '--work-dir', tmp_path / 'w', '--cfg-options',
                  f'load_from={osp.join(trained, "iter_4.pth")}'), tmp_path)
    assert 'iter_4.pth holds 9 of the 9 tensors of the model' in (
        proc.stdout + proc.stderr)


# --- the launcher ------------------------------------------------------------


def _children(pid):
    """Pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                stat = f.read()
        except OSError:
            continue
        # the command may hold spaces and parentheses: split after the last
        fields = stat.rsplit(')', 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _alive(pid):
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _rank(pid):
    with open(f'/proc/{pid}/environ', 'rb') as f:
        env = dict(
            item.split(b'=', 1) for item in f.read().split(b'\0') if item)
    return int(env[b'RANK'])


def _wait(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


@pytest.fixture
def long_dist_run(tmp_path):
    """``tools/dist_train.sh`` of the toy config, 2 workers, far from done;
    yields (launcher Popen, worker pids, work dir, log path) once both
    workers train. Every process left over is SIGKILLed afterwards."""
    cfg = _config(
        tmp_path, 'long_cfg', 'train_cfg = dict(max_iters=10**7, '
        'val_interval=10**7)\n'
        'default_hooks = dict(logger=dict(interval=1000), '
        'checkpoint=dict(interval=20, max_keep_ckpts=2))\n')
    work_dir = str(tmp_path / 'work')
    log_path = str(tmp_path / 'launcher.log')
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([REPO, TOY_DIR, str(tmp_path)]),
        PYTHON=sys.executable,
        OMP_NUM_THREADS='1',
        PORT=str(free_port()))
    log = open(log_path, 'w')
    launcher = subprocess.Popen(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg, '2',
         '--work-dir', work_dir],
        cwd=str(tmp_path),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True)  # its own group, as from a shell
    workers = []
    try:
        assert _wait(lambda: osp.exists(osp.join(work_dir, 'iter_20.pth')),
                     TIMEOUT), open(log_path).read()[-3000:]
        workers = _children(launcher.pid)
        assert len(workers) == 2, workers
        yield launcher, workers, work_dir, log_path
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()
        launcher.wait()
        log.close()


def test_sigkill_of_launcher_group_stops_workers(long_dist_run):
    launcher, workers, work_dir, _ = long_dist_run
    # torchrun starts each worker in a session of its own
    assert all(os.getsid(pid) != os.getsid(launcher.pid) for pid in workers)
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    assert _wait(lambda: not any(_alive(pid) for pid in workers), 60), [
        pid for pid in workers if _alive(pid)
    ]


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_signal_to_launcher_stops_workers(long_dist_run, sig):
    """SIGTERM, and SIGINT as Ctrl-C sends it to the foreground group."""
    launcher, workers, _, _ = long_dist_run
    os.killpg(launcher.pid, sig)
    assert _wait(lambda: not any(_alive(pid) for pid in workers), 60)
    assert launcher.wait(timeout=60) != 0


def test_dead_rank_stops_the_others(long_dist_run):
    launcher, workers, _, log_path = long_dist_run
    victim = next(pid for pid in workers if _rank(pid) == 1)
    os.kill(victim, signal.SIGKILL)
    assert launcher.wait(timeout=90) != 0
    assert _wait(lambda: not any(_alive(pid) for pid in workers), 30)
    log = open(log_path).read()
    # torchrun's summary names the rank, its pid and the signal under
    # 'Root Cause (first observed failure)'
    assert 'Root Cause (first observed failure)' in log
    assert 'rank      : 1 (local_rank: 1)' in log, log[-3000:]
    assert f'Signal 9 (SIGKILL) received by PID {victim}' in log, log[-3000:]
