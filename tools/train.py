# Copyright (c) gap_mm authors. All rights reserved.
"""Train a model from an OpenMMLab config (mmengine, mmdet, mmdet3d, gap_mm).

Examples:
    python tools/train.py configs/xxx.py --work-dir work_dirs/xxx
    python tools/train.py configs/xxx.py --resume            # auto-resume
    python tools/train.py configs/xxx.py --resume ckpt.pth   # from a file
    tools/dist_train.sh configs/xxx.py 2                     # also on CPU
"""
import argparse
import logging
import os.path as osp
import sys
import warnings

# mmengine resolves `mmdet::` configs through the deprecated pkg_resources.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from gap_mm.checkpoint.recovery import prepare_checkpoint_loading  # noqa
from gap_mm.checkpoint.weights_match import check_weights_match  # noqa: E402
from gap_mm.errors import GaPConfigError  # noqa: E402
from gap_mm.prerun_checks import (check_data_paths,  # noqa: E402
                                  check_gap_hook_options, merge_cfg_options)
from gap_mm.utils.launcher_guard import die_with_launcher  # noqa: E402
from gap_mm.utils import (allow_mmengine_checkpoint_globals,  # noqa: E402
                          destroy_dist, export_local_rank,
                          setup_cpu_distributed)

# optim_wrapper.type -> its AMP variant for ``--amp``.
AMP_OPTIM_WRAPPERS = {
    'OptimWrapper': 'AmpOptimWrapper',
    'GaPOptimWrapper': 'GaPAmpOptimWrapper',
}


def parse_args() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If a checkpoint path is given, resume from it; if given '
        'without a value, resume from the latest checkpoint in the work dir.')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic mixed precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR by the config\'s auto_scale_lr')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or
    # --local_rank; torchrun only sets the LOCAL_RANK env variable.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    export_local_rank(args.local_rank)
    return args


def amp_device_available() -> bool:
    """Whether a device that MMEngine's ``AmpOptimWrapper`` accepts is
    there (it asserts CUDA, NPU, MLU or MUSA when built)."""
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def enable_amp(cfg: Config) -> Config:
    """Switch ``cfg.optim_wrapper`` to its automatic mixed precision variant.

    ``OptimWrapper`` becomes ``AmpOptimWrapper`` and ``GaPOptimWrapper``
    becomes ``GaPAmpOptimWrapper``; an AMP wrapper is kept (with a warning);
    any other type raises, and so does a machine without a GPU.
    ``loss_scale`` is set to ``'dynamic'``.

    Args:
        cfg (Config): The config, modified in place.

    Returns:
        Config: The same config.
    """
    if not amp_device_available():
        raise GaPConfigError(
            '--amp needs a GPU (CUDA, NPU, MLU or MUSA): MMEngine\'s '
            'AmpOptimWrapper runs only there, and none is available; on the '
            'CPU train without --amp')
    optim_wrapper = cfg.get('optim_wrapper')
    if optim_wrapper is None:
        raise GaPConfigError('--amp needs an optim_wrapper in the config')
    # MMEngine builds an OptimWrapper when the type is not given.
    wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
    type_name = getattr(wrapper_type, '__name__', wrapper_type)
    if type_name in AMP_OPTIM_WRAPPERS:
        optim_wrapper.type = AMP_OPTIM_WRAPPERS[type_name]
    elif type_name in AMP_OPTIM_WRAPPERS.values():
        print_log(
            f'AMP training is already enabled by {type_name} in the config.',
            logger='current',
            level=logging.WARNING)
    else:
        raise GaPConfigError(
            f'--amp supports optim_wrapper types '
            f'{sorted(AMP_OPTIM_WRAPPERS)} (and their AMP variants '
            f'{sorted(AMP_OPTIM_WRAPPERS.values())}), but got {type_name!r}')
    optim_wrapper.loss_scale = 'dynamic'
    return cfg


def main() -> None:
    """Build a Runner from the config and train.

    A bad config value (GaP settings, data paths, a schedule longer than the
    run) ends with its message and exit code 1, not a traceback.
    """
    # a worker of tools/dist_*.sh stops when its launcher dies, SIGKILL too
    die_with_launcher()
    args = parse_args()
    try:
        train(args)
    except GaPConfigError as err:
        sys.exit(f'error: {err}')
    # The Runner (and its DDP wrapper) is gone with train()'s frame.
    destroy_dist()


def train(args: argparse.Namespace) -> None:
    """Train as ``args`` say."""

    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    # `gap_sparsity=0.9` must reach the GaPHook that captured the old value
    # when the config file was read.
    merge_cfg_options(cfg, args.cfg_options)
    # Fail here with the bad value named, not deep inside mmengine/mmdet.
    check_gap_hook_options(cfg)
    check_data_paths(cfg, ('train_dataloader', 'val_dataloader'))

    # work_dir priority: CLI > config > work_dirs/<config stem>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        enable_amp(cfg)

    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'enable' in cfg.auto_scale_lr \
                and 'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or '
                               '"auto_scale_lr.enable" or '
                               '"auto_scale_lr.base_batch_size" in your'
                               ' configuration file.')

    # --resume: 'auto' resumes from the newest complete checkpoint in
    # work_dir; an unusable explicit checkpoint stops here, named.
    prepare_checkpoint_loading(cfg, args.resume)

    # torch >= 2.6 loads checkpoints with weights_only=True by default.
    allow_mmengine_checkpoint_globals()
    setup_cpu_distributed(cfg, args.launcher)

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    if cfg.get('load_from') and not cfg.get('resume'):
        # another model's checkpoint would silently train from scratch
        check_weights_match(runner.model, cfg.load_from, 'load_from')
    runner.train()


if __name__ == '__main__':
    main()
