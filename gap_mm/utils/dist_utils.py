# Copyright (c) gap_mm authors. All rights reserved.
"""Distributed training and testing on machines without an accelerator.

MMEngine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device``
unconditionally for the ``pytorch`` and ``slurm`` launchers (and the ``mpi``
one), which raises on a CPU-only torch. Its ``Runner.wrap_model`` also passes
``device_ids=[LOCAL_RANK]`` to ``MMDistributedDataParallel``, which DDP
rejects for a CPU module. :func:`setup_cpu_distributed` works around both
without patching MMEngine: it initialises a ``gloo`` process group before the
``Runner`` is built (the Runner then skips its own initialisation) and puts
``device_ids=None`` into ``cfg.model_wrapper_cfg``.
"""
import datetime
import gc
import os
import subprocess
from typing import Optional

import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.device import (is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def export_local_rank(cli_local_rank: int = 0) -> None:
    """Set ``LOCAL_RANK``, which ``Runner.wrap_model`` reads for DDP's
    ``device_ids``, when the launcher has not.

    torchrun sets it; ``torch.distributed.launch`` passes ``--local-rank``;
    Open MPI sets only ``OMPI_COMM_WORLD_LOCAL_RANK`` (and MMEngine's
    ``init_dist('mpi')`` selects that GPU without exporting it), so without
    this every rank of an MPI job would wrap its model for ``cuda:0``.
    Slurm jobs get it from MMEngine's ``init_dist('slurm')``. On a machine
    without GPUs :func:`init_cpu_dist` derives it from Open MPI's
    environment again, with the rest of torch.distributed's variables.

    Args:
        cli_local_rank (int): The ``--local-rank`` argument. Defaults to 0.
    """
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = os.environ.get('OMPI_COMM_WORLD_LOCAL_RANK',
                                                  str(cli_local_rank))


def has_accelerator() -> bool:
    """Whether MMEngine would run on an accelerator (CUDA, NPU, MLU, MUSA).

    Returns:
        bool: True if any accelerator supported by MMEngine is available.
    """
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def _set_env_from_slurm(port: Optional[int] = None) -> None:
    """Derive torch.distributed's env variables from SLURM's.

    This mirrors ``mmengine.dist.utils._init_dist_slurm`` without its device
    selection.

    Args:
        port (int, optional): Master port. Defaults to ``MASTER_PORT`` from
            the environment, else 29500.
    """
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    local_rank = os.environ.get('SLURM_LOCALID', str(proc_id))
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1')
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = local_rank
    os.environ['RANK'] = str(proc_id)


def _set_env_from_mpi() -> None:
    """Derive torch.distributed's env variables from Open MPI's."""
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        raise KeyError('The environment variable MASTER_ADDR is not set')
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ['LOCAL_RANK'] = os.environ['OMPI_COMM_WORLD_LOCAL_RANK']


def init_cpu_dist(launcher: str,
                  timeout: Optional[float] = None,
                  port: Optional[int] = None) -> None:
    """Initialise a ``gloo`` process group from the launcher's environment.

    Args:
        launcher (str): ``'pytorch'`` (torchrun / ``torch.distributed.launch``
            set ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
            ``MASTER_PORT``), ``'slurm'`` or ``'mpi'``.
        timeout (float, optional): Timeout of collective operations in
            seconds. Defaults to None (torch's default).
        port (int, optional): Master port for the ``slurm`` launcher.
            Defaults to None.
    """
    if torch_dist.is_initialized():
        return
    if launcher == 'slurm':
        _set_env_from_slurm(port)
    elif launcher == 'mpi':
        _set_env_from_mpi()
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}, expected one '
                         f'of {LAUNCHERS[1:]}')
    kwargs = dict()
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    torch_dist.init_process_group(
        backend='gloo',
        init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)


def _cpu_model_wrapper_cfg(cfg: Config) -> Optional[dict]:
    """Return ``cfg.model_wrapper_cfg`` with ``device_ids=None`` for DDP.

    Args:
        cfg (Config): The full config.

    Returns:
        dict, optional: The model wrapper config to use on the CPU.
    """
    wrapper_cfg = cfg.get('model_wrapper_cfg')
    if wrapper_cfg is None:
        # What Runner.wrap_model builds without a model_wrapper_cfg, except
        # for the device ids.
        return dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False),
            device_ids=None)
    wrapper_cfg = wrapper_cfg.copy()
    wrapper_type = wrapper_cfg.setdefault('type', 'MMDistributedDataParallel')
    if isinstance(wrapper_type, str):
        wrapper_type = MODEL_WRAPPERS.get(wrapper_type)
    # Runner.wrap_model only passes device_ids to DDP subclasses, and an
    # explicit value in the config takes precedence over it.
    if isinstance(wrapper_type, type) and issubclass(wrapper_type,
                                                     DistributedDataParallel):
        wrapper_cfg.setdefault('device_ids', None)
    return wrapper_cfg


def setup_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Prepare distributed training or testing on a machine without GPUs.

    Call it after the config is final and before ``Runner.from_cfg``. It does
    nothing when ``launcher`` is ``'none'`` or an accelerator is available
    (MMEngine then initialises NCCL/HCCL/... itself). Otherwise it

    - initialises a ``gloo`` process group from the launcher's environment,
      so the Runner does not call ``mmengine.dist.init_dist``, which would
      call ``torch.cuda.set_device``;
    - sets ``cfg.env_cfg.dist_cfg.backend = 'gloo'`` so the config matches
      the process group;
    - sets ``cfg.model_wrapper_cfg`` so that ``MMDistributedDataParallel``
      (or another DDP subclass) gets ``device_ids=None``.

    Args:
        cfg (Config): The config that the Runner will be built from. Modified
            in place.
        launcher (str): One of ``'none'``, ``'pytorch'``, ``'slurm'``,
            ``'mpi'``.

    Returns:
        bool: True if a CPU (gloo) process group was set up.

    Examples:
        >>> cfg = Config.fromfile(args.config)
        >>> cfg.launcher = args.launcher
        >>> setup_cpu_distributed(cfg, args.launcher)
        >>> runner = Runner.from_cfg(cfg)
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'Invalid launcher type: {launcher}, expected one '
                         f'of {LAUNCHERS}')
    if launcher == 'none' or has_accelerator():
        return False
    env_cfg = cfg.get('env_cfg') or dict()
    dist_cfg = dict(env_cfg.get('dist_cfg') or dict())
    dist_cfg['backend'] = 'gloo'
    init_cpu_dist(
        launcher, timeout=dist_cfg.get('timeout'), port=dist_cfg.get('port'))
    cfg.env_cfg = dict(env_cfg, dist_cfg=dist_cfg)
    cfg.model_wrapper_cfg = _cpu_model_wrapper_cfg(cfg)
    return True


def destroy_dist() -> None:
    """Shut the default process group down before the interpreter does.

    Call it once the Runner is gone. Left to interpreter shutdown, a gloo
    worker thread may still be releasing the tensors of a finished
    collective (the broadcast of the last validation's metrics, say) when
    Python finalizes; it cannot take the GIL any more, and the process
    aborts with ``terminate called without an active exception`` after
    training has succeeded (measured: 2 of 24 two-process CPU runs of the
    PointNet++ e2e config; the core dump shows
    ``ProcessGroupGloo::AsyncWork::~AsyncWork`` waiting for the GIL in
    ``Py_FinalizeEx``). Collecting garbage first drops the group's last
    reference, the DDP wrapper's, so the group's destructor drains its work
    queue and joins its threads while Python is still alive.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        gc.collect()
        torch_dist.destroy_process_group()
