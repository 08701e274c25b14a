# Copyright (c) gap_mm authors. All rights reserved.
"""Test (evaluate) a checkpoint with an OpenMMLab config.

Examples:
    python tools/test.py configs/xxx.py work_dirs/xxx/iter_100.pth
    python tools/test.py configs/xxx.py ckpt.pth --out results.pkl
    python tools/test.py configs/xxx.py ckpt.pth --show-dir vis
    tools/dist_test.sh configs/xxx.py ckpt.pth 2              # also on CPU
"""
import argparse
import logging
import os.path as osp
import sys
import warnings
from typing import Optional

# mmengine resolves `mmdet::` configs through the deprecated pkg_resources.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402
from mmengine.evaluator import BaseMetric, DumpResults  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from gap_mm.checkpoint.loading import plain_load_note  # noqa: E402
from gap_mm.checkpoint.recovery import check_checkpoint_file  # noqa: E402
from gap_mm.checkpoint.weights_match import check_weights_match  # noqa: E402
from gap_mm.errors import GaPConfigError  # noqa: E402
from gap_mm.prerun_checks import (check_data_paths,  # noqa: E402
                                  check_gap_hook_options, imports_gap_mm,
                                  merge_cfg_options)
from gap_mm.utils.launcher_guard import die_with_launcher  # noqa: E402
from gap_mm.utils import (allow_mmengine_checkpoint_globals,  # noqa: E402
                          destroy_dist, export_local_rank,
                          setup_cpu_distributed)


def parse_args() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. '
        'If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
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
    parser.add_argument(
        '--tta', action='store_true', help='test with test-time augmentation')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    export_local_rank(args.local_rank)
    return args


def enable_visualization(cfg: Config, show: bool, show_dir: str,
                         wait_time: float) -> Config:
    """Turn on drawing in the config's visualization hook.

    Works with mmdet's ``DetVisualizationHook`` and mmdet3d's
    ``Det3DVisualizationHook``, which share these arguments.

    Args:
        cfg (Config): The config, modified in place.
        show (bool): Show the predictions in a window.
        show_dir (str): Directory (relative to the run's log dir) to save the
            painted images in. May be None.
        wait_time (float): Seconds each image is shown.

    Returns:
        Config: The same config.
    """
    vis_hook = cfg.get('default_hooks', {}).get('visualization')
    if vis_hook is None:
        raise RuntimeError(
            '--show and --show-dir need a visualization hook in the config: '
            "default_hooks = dict(visualization=dict(type="
            "'DetVisualizationHook')) (or 'Det3DVisualizationHook').")
    vis_hook['draw'] = True
    if show:
        vis_hook['show'] = True
        vis_hook['wait_time'] = wait_time
    if show_dir:
        vis_hook['test_out_dir'] = show_dir
    return cfg


def enable_tta(cfg: Config) -> Config:
    """Wrap the model and the test pipeline for test-time augmentation.

    Args:
        cfg (Config): The config, modified in place. It needs ``tta_model``
            and ``tta_pipeline``.

    Returns:
        Config: The same config.
    """
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise RuntimeError(
            '--tta needs `tta_model` and `tta_pipeline` in the config')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    test_data_cfg = cfg.test_dataloader.dataset
    while 'dataset' in test_data_cfg:  # dataset wrappers
        test_data_cfg = test_data_cfg['dataset']
    test_data_cfg.pipeline = cfg.tta_pipeline
    return cfg


def build_dump_metric(out_file: str,
                      scope: Optional[str] = None) -> BaseMetric:
    """Build the metric that dumps predictions to ``out_file``.

    mmdet's ``DumpDetResults`` (which also encodes masks) is used when
    the config's scope is ``mmdet`` and mmdet is installed, else MMEngine's
    generic ``DumpResults``.

    Args:
        out_file (str): A ``.pkl`` or ``.pickle`` path.
        scope (str, optional): The config's ``default_scope``.

    Returns:
        BaseMetric: The dump metric.
    """
    if not out_file.endswith(('.pkl', '.pickle')):
        raise ValueError(
            f'--out must be a .pkl or .pickle file, but got {out_file}')
    if scope == 'mmdet':
        try:
            from mmdet.evaluation import DumpDetResults
            return DumpDetResults(out_file_path=out_file)
        except ImportError:
            pass
    return DumpResults(out_file_path=out_file)


def checkpoint_exists(checkpoint: str) -> bool:
    """Whether a local checkpoint path exists (remote URIs are trusted).

    Args:
        checkpoint (str): A local path or a URI such as ``https://...``.

    Returns:
        bool: False only for a local path that is not a file.
    """
    return '://' in checkpoint or osp.isfile(checkpoint)


def main() -> None:
    """Build a Runner from the config and test the checkpoint.

    A missing checkpoint or data file and a bad GaP setting end with their
    message and exit code 1, not a traceback.
    """
    # a worker of tools/dist_*.sh stops when its launcher dies, SIGKILL too
    die_with_launcher()
    args = parse_args()
    if not checkpoint_exists(args.checkpoint):
        sys.exit(f'error: checkpoint file not found: {args.checkpoint}')
    try:
        test(args)
    except GaPConfigError as err:
        sys.exit(f'error: {err}')
    # The Runner (and its DDP wrapper) is gone with test()'s frame.
    destroy_dist()


def test(args: argparse.Namespace) -> None:
    """Test as ``args`` say."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    merge_cfg_options(cfg, args.cfg_options)
    # A GaP config builds its GaPHook for testing too (it does nothing
    # there); reject its bad options here, with the value named.
    check_gap_hook_options(cfg)

    # work_dir priority: CLI > config > work_dirs/<config stem>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    # a truncated or empty file stops here, named, not in torch.load
    check_checkpoint_file(args.checkpoint, 'checkpoint')
    if not imports_gap_mm(cfg):
        # An upstream config: this tool reads a training checkpoint, mmdet's
        # own tools with the same config do not; say how to make the file
        # they read.
        note = plain_load_note(args.checkpoint)
        if note:
            print_log(note, logger='current', level=logging.WARNING)
    cfg.load_from = args.checkpoint
    check_data_paths(cfg, ('test_dataloader', ))

    if args.show or args.show_dir:
        enable_visualization(cfg, args.show, args.show_dir, args.wait_time)
    if args.tta:
        enable_tta(cfg)

    # torch >= 2.6 loads checkpoints with weights_only=True by default.
    allow_mmengine_checkpoint_globals()
    setup_cpu_distributed(cfg, args.launcher)

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)

    if not args.tta:
        # another model's checkpoint would test random weights (mAP 0.000)
        check_weights_match(
            runner.model, args.checkpoint, 'checkpoint', require_all=True)

    if args.out is not None:
        runner.test_evaluator.metrics.append(
            build_dump_metric(args.out, cfg.get('default_scope')))

    runner.test()


if __name__ == '__main__':
    main()
