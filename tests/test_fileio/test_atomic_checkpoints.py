# Copyright (c) gap_mm contributors. All rights reserved.
"""Checkpoints are written whole or not at all, and the previous one is
deleted only after the next is complete (gap_mm.fileio,
gap_mm.engine.checkpointing)."""
import os
import os.path as osp
import sys

import pytest
from mmengine.config import Config
from mmengine.fileio import get_file_backend
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import gap_mm  # noqa: F401  (registers the backend and the hook)
from gap_mm.checkpoint import (checkpoint_problem, load_checkpoint,
                               restores_method_state)
from gap_mm.engine.checkpointing import AtomicCheckpointHook
from gap_mm.fileio import (AtomicLocalBackend, atomic_local_backend,
                           atomic_write_bytes, remove_stale_temp_files)

TOY_DIR = osp.join(
    osp.dirname(osp.abspath(__file__)), '..', 'test_tools', 'toy_cfg')
TOY_CFG = osp.join(TOY_DIR, 'toy_config.py')


def _hidden(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith('.'))


def _runner(work_dir, name, max_iters, resume=False):
    if TOY_DIR not in sys.path:
        sys.path.insert(0, TOY_DIR)
    cfg = Config.fromfile(TOY_CFG)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = name
    cfg.train_cfg.max_iters = max_iters
    cfg.default_hooks.checkpoint.update(interval=2, max_keep_ckpts=1)
    cfg.resume = resume
    cfg.log_level = 'WARNING'
    return Runner.from_cfg(cfg)


def test_registered_for_every_scope():
    from mmengine.registry import HOOKS
    assert isinstance(get_file_backend('/tmp/x.pth'), AtomicLocalBackend)
    assert HOOKS.get('CheckpointHook') is AtomicCheckpointHook
    mmdet_registry = pytest.importorskip('mmdet.registry')
    with DefaultScope.overwrite_default_scope('mmdet'):
        hook = mmdet_registry.HOOKS.build(
            dict(type='CheckpointHook', interval=1))
    assert type(hook) is AtomicCheckpointHook


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / 'f.bin'
    atomic_write_bytes(b'old', path)

    def half_then_fail(f, data, tmp_path):
        f.write(data[:len(data) // 2])
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(atomic_local_backend, '_write_and_sync',
                        half_then_fail)
    with pytest.raises(OSError, match='No space left'):
        atomic_write_bytes(b'new contents', path)
    assert path.read_bytes() == b'old'
    assert _hidden(tmp_path) == []


def test_stale_temp_files_removed_live_kept(tmp_path):
    dead = tmp_path / '.iter_4.pth.tmp-999999999-abc'
    live = tmp_path / f'.iter_6.pth.tmp-{os.getpid()}-xyz'
    other = tmp_path / '.hidden'
    for p in (dead, live, other):
        p.write_bytes(b'x')
    assert remove_stale_temp_files(tmp_path) == [str(dead)]
    assert _hidden(tmp_path) == sorted([live.name, other.name])


def test_normal_saves_leave_no_temp_files(tmp_path):
    work_dir = tmp_path / 'work'
    _runner(work_dir, 'atomic_normal', max_iters=6).train()
    names = sorted(os.listdir(work_dir))
    assert [n for n in names if n.endswith('.pth')] == ['iter_6.pth']
    assert _hidden(work_dir) == []
    last = (work_dir / 'last_checkpoint').read_text()
    assert last == osp.join(str(work_dir), 'iter_6.pth')
    assert checkpoint_problem(last) is None


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """max_keep_ckpts=1: the write of iter_4.pth dies half way; iter_2.pth
    and last_checkpoint naming it survive (MMEngine's hook had deleted
    iter_2.pth before writing)."""
    work_dir = tmp_path / 'work'
    runner = _runner(work_dir, 'atomic_first', max_iters=2)
    assert not restores_method_state(runner)
    runner.train()
    iter_2 = osp.join(str(work_dir), 'iter_2.pth')
    before = open(iter_2, 'rb').read()

    def half_then_die(f, data, tmp_path):
        f.write(bytes(data)[:len(data) // 2])
        raise KeyboardInterrupt  # what Ctrl-C mid-save raises

    monkeypatch.setattr(atomic_local_backend, '_write_and_sync',
                        half_then_die)
    runner = _runner(work_dir, 'atomic_second', max_iters=4, resume=True)
    assert restores_method_state(runner)
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    assert not osp.exists(osp.join(str(work_dir), 'iter_4.pth'))
    assert open(iter_2, 'rb').read() == before
    assert (work_dir / 'last_checkpoint').read_text() == iter_2
    assert load_checkpoint(iter_2)['meta']['iter'] == 2
    assert _hidden(work_dir) == []

    # and the run goes on from there
    monkeypatch.undo()
    _runner(work_dir, 'atomic_third', max_iters=4, resume=True).train()
    ckpt = load_checkpoint(osp.join(str(work_dir), 'iter_4.pth'))
    assert ckpt['meta']['iter'] == 4
    assert not osp.exists(iter_2)  # max_keep_ckpts=1, after the save
    assert ckpt['message_hub']['runtime_info']['keep_ckpt_ids'] == [4]
