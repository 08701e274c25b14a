# Copyright (c) gap_mm authors. All rights reserved.
"""End-to-end tests of tools/{train,test}.py and tools/dist_{train,test}.sh.

The tools run in subprocesses on a plain MMEngine toy config
(``toy_cfg/toy_config.py``), two gloo processes where distributed, so they
cover the CPU-distributed setup and the checkpoint allow-list as a user hits
them.
"""
import importlib.util
import os
import os.path as osp
import pickle
import shutil
import sys

import pytest
import torch
from mmengine.config import Config

from gap_mm.testing.e2e import free_port, run_tool
from gap_mm.utils import (allow_mmengine_checkpoint_globals, destroy_dist,
                          export_local_rank, setup_cpu_distributed)

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOY_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'toy_cfg')
TOY_CFG = osp.join(TOY_DIR, 'toy_config.py')
TIMEOUT = 120


def _run(cmd, cwd, check=True):
    return run_tool(
        cmd,
        cwd, [REPO, TOY_DIR],
        check=check,
        timeout=TIMEOUT,
        PORT=str(free_port()))


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(
        f'gap_mm_tools_{name}', osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def dist_work_dir(tmp_path_factory):
    """Train the toy config for 4 iterations on 2 gloo processes."""
    tmp = tmp_path_factory.mktemp('dist_train')
    work_dir = str(tmp / 'work_dir')
    proc = _run([
        'bash',
        osp.join(REPO, 'tools', 'dist_train.sh'), TOY_CFG, '2', '--work-dir',
        work_dir
    ],
                cwd=str(tmp))
    return work_dir, proc.stdout + proc.stderr


def test_dist_train_two_gloo_processes(dist_work_dir):
    work_dir, log = dist_work_dir
    assert 'Distributed training: True' in log
    assert 'GPU number: 2' in log  # mmengine's name for the world size
    for name in ('iter_2.pth', 'iter_4.pth', 'last_checkpoint'):
        assert osp.isfile(osp.join(work_dir, name)), name
    dumped = Config.fromfile(
        osp.join(work_dir, 'toy_config.py'), import_custom_modules=False)
    assert dumped.env_cfg.dist_cfg.backend == 'gloo'
    assert dumped.model_wrapper_cfg.device_ids is None
    assert dumped.launcher == 'pytorch'


def test_resume_continues(dist_work_dir, tmp_path):
    work_dir = str(tmp_path / 'work_dir')
    shutil.copytree(dist_work_dir[0], work_dir)
    proc = _run([
        sys.executable,
        osp.join(REPO, 'tools', 'train.py'), TOY_CFG, '--work-dir', work_dir,
        '--resume', '--cfg-options', 'train_cfg.max_iters=6'
    ],
                cwd=str(tmp_path))
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 4' in log
    allow_mmengine_checkpoint_globals()
    ckpt = torch.load(osp.join(work_dir, 'iter_6.pth'), map_location='cpu')
    assert ckpt['meta']['iter'] == 6
    # The message hub continued too: the loss history spans all 6 iters.
    loss_history = ckpt['message_hub']['log_scalars']['train/loss']
    assert len(loss_history.data[0]) == 6

    # --resume PATH resumes from that file (here the older iter_2).
    proc = _run([
        sys.executable,
        osp.join(REPO, 'tools', 'train.py'), TOY_CFG, '--work-dir',
        str(tmp_path / 'from_path'), '--resume',
        osp.join(work_dir, 'iter_2.pth'), '--cfg-options',
        'train_cfg.max_iters=3'
    ],
                cwd=str(tmp_path))
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    assert osp.isfile(str(tmp_path / 'from_path' / 'iter_3.pth'))


def test_checkpoint_loads_with_weights_only(dist_work_dir):
    ckpt_file = osp.join(dist_work_dir[0], 'iter_4.pth')
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        # What mmengine 0.10.7 does under torch >= 2.6 without the list.
        with pytest.raises(Exception, match='[Ww]eights only load failed'):
            torch.load(ckpt_file, map_location='cpu', weights_only=True)
        allow_mmengine_checkpoint_globals()
        ckpt = torch.load(ckpt_file, map_location='cpu', weights_only=True)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)
    allow_mmengine_checkpoint_globals()
    assert ckpt['meta']['iter'] == 4
    assert list(ckpt['meta']['dataset_meta']['ids']) == [0, 1, 2]
    hub = ckpt['message_hub']['log_scalars']
    assert hub['val/toy/mse'].statistics('mean') > 0
    assert set(ckpt) >= {'state_dict', 'optimizer', 'param_schedulers'}


def test_allow_list_rejects_arbitrary_getattr(tmp_path):

    class Sneaky:

        def __reduce__(self):
            # Would hand out the builtins module if getattr were allowed.
            return getattr, (getattr, '__self__')

    path = str(tmp_path / 'sneaky.pth')
    torch.save(dict(x=Sneaky()), path)
    allow_mmengine_checkpoint_globals()
    with pytest.raises(Exception, match='only allowed for HistoryBuffer'):
        torch.load(path, weights_only=True)


def test_test_py_and_dist_test(dist_work_dir, tmp_path):
    ckpt_file = osp.join(dist_work_dir[0], 'iter_4.pth')
    out_single = str(tmp_path / 'single.pkl')
    proc = _run([
        sys.executable,
        osp.join(REPO, 'tools', 'test.py'), TOY_CFG, ckpt_file, '--work-dir',
        str(tmp_path / 'single'), '--out', out_single
    ],
                cwd=str(tmp_path))
    assert 'toy/mse' in proc.stdout + proc.stderr
    out_dist = str(tmp_path / 'dist.pkl')
    _run([
        'bash',
        osp.join(REPO, 'tools', 'dist_test.sh'), TOY_CFG, ckpt_file, '2',
        '--work-dir',
        str(tmp_path / 'dist'), '--out', out_dist
    ],
         cwd=str(tmp_path))
    with open(out_single, 'rb') as f:
        single = pickle.load(f)
    with open(out_dist, 'rb') as f:
        dist = pickle.load(f)
    # Both ranks' predictions are gathered, in dataset order.
    assert len(single) == len(dist) == 16
    for a, b in zip(single, dist):
        torch.testing.assert_close(a['pred'], b['pred'])


def test_test_py_missing_checkpoint(tmp_path):
    missing = str(tmp_path / 'no_such_checkpoint.pth')
    proc = _run(
        [sys.executable,
         osp.join(REPO, 'tools', 'test.py'), TOY_CFG, missing],
        cwd=str(tmp_path),
        check=False)
    assert proc.returncode != 0
    assert f'checkpoint file not found: {missing}' in proc.stderr
    assert 'Traceback' not in proc.stderr


@pytest.mark.parametrize('before, after', [
    ('OptimWrapper', 'AmpOptimWrapper'),
    (None, 'AmpOptimWrapper'),
    ('GaPOptimWrapper', 'GaPAmpOptimWrapper'),
    ('AmpOptimWrapper', 'AmpOptimWrapper'),
    ('GaPAmpOptimWrapper', 'GaPAmpOptimWrapper'),
])
def test_enable_amp(before, after, monkeypatch):
    train = _load_tool('train')
    monkeypatch.setattr(train, 'amp_device_available', lambda: True)
    optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1))
    if before is not None:
        optim_wrapper['type'] = before
    cfg = Config(dict(optim_wrapper=optim_wrapper))
    train.enable_amp(cfg)
    assert cfg.optim_wrapper.type == after
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.optim_wrapper.optimizer.type == 'SGD'


def test_amp_without_a_gpu_is_one_line(tmp_path):
    """``--amp`` on a machine without a GPU stops before training with one
    line, not MMEngine's assertion."""
    if torch.cuda.is_available():
        pytest.skip('a GPU is present: --amp is valid here')
    proc = _run([
        sys.executable,
        osp.join(REPO, 'tools', 'train.py'), TOY_CFG, '--amp', '--work-dir',
        str(tmp_path / 'amp')
    ],
                cwd=str(tmp_path),
                check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --amp needs a GPU (CUDA, NPU, MLU or MUSA): MMEngine's "
        'AmpOptimWrapper runs only there, and none is available; on the CPU '
        'train without --amp')
    assert 'Traceback' not in proc.stderr


def test_enable_amp_unknown_type(monkeypatch):
    train = _load_tool('train')
    monkeypatch.setattr(train, 'amp_device_available', lambda: True)
    cfg = Config(
        dict(optim_wrapper=dict(type='MyWrapper', optimizer=dict(type='SGD'))))
    with pytest.raises(ValueError, match="'MyWrapper'"):
        train.enable_amp(cfg)


def test_setup_cpu_distributed(monkeypatch):
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    assert not setup_cpu_distributed(cfg, 'none')
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert 'model_wrapper_cfg' not in cfg
    with pytest.raises(ValueError, match='Invalid launcher'):
        setup_cpu_distributed(cfg, 'ssh')
    if torch.cuda.is_available() or torch.distributed.is_initialized():
        pytest.skip('needs a CPU-only process without a process group')

    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(free_port()))
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    user_wrapper = dict(
        type='MMDistributedDataParallel', find_unused_parameters=True)
    cfg = Config(
        dict(
            env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=60)),
            model_wrapper_cfg=user_wrapper))
    try:
        assert setup_cpu_distributed(cfg, 'pytorch')
        assert torch.distributed.get_backend() == 'gloo'
    finally:
        torch.distributed.destroy_process_group()
    assert cfg.env_cfg.dist_cfg == dict(backend='gloo', timeout=60)
    # The user's wrapper options are kept; only device_ids is added.
    assert cfg.model_wrapper_cfg == dict(user_wrapper, device_ids=None)


@pytest.mark.parametrize(
    'env, cli, expected',
    [
        (dict(LOCAL_RANK='3',
              OMPI_COMM_WORLD_LOCAL_RANK='5'), 0, '3'),  # torchrun
        (dict(OMPI_COMM_WORLD_LOCAL_RANK='5'), 0, '5'),  # mpirun
        (dict(), 2, '2'),  # torch.distributed.launch --local-rank 2
        (dict(), 0, '0'),  # a single process
    ])
def test_export_local_rank(monkeypatch, env, cli, expected):
    for key in ('LOCAL_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK'):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    export_local_rank(cli)
    assert os.environ['LOCAL_RANK'] == expected


def test_destroy_dist_shuts_the_group_down(monkeypatch):
    if torch.distributed.is_initialized():
        pytest.skip('needs a process without a process group')
    destroy_dist()  # no group: nothing to do
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(free_port()))
    torch.distributed.init_process_group('gloo', rank=0, world_size=1)
    # A finished asynchronous collective whose tensors Python has dropped,
    # as the last validation's broadcast leaves behind.
    torch.distributed.broadcast(torch.ones(4), src=0, async_op=True).wait()
    destroy_dist()
    assert not torch.distributed.is_initialized()
