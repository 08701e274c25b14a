# Copyright (c) gap_mm contributors. All rights reserved.
"""Config checks run by the tools before a Runner is built.

They turn the usual failures of a GaP config into one clear message instead
of a traceback from deep inside mmengine or mmdet.
"""
import difflib
import inspect
import os.path as osp
from typing import Iterable, List, Optional

from mmengine.config import Config

from gap_mm.errors import GaPConfigError

#: Top-level config variables and the GaPHook argument each one sets.
GAP_CFG_VARIABLES = {
    'gap_sparsity': 'sparsity',
    'gap_distribution': 'distribution',
    'gap_pattern': 'pattern',
}


def _did_you_mean(key: str, valid: Iterable[str], prefix: str = '') -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" Did you mean '{prefix}{close[0]}'?" if close else ''


def _gap_hooks(cfg: Config) -> List[dict]:
    return [
        h for h in (cfg.get('custom_hooks') or [])
        if isinstance(h, dict) and h.get('type') in ('GaPHook',
                                                     'gap_mm.GaPHook')
    ]


def propagate_gap_variables(cfg: Config,
                            changed: Optional[Iterable[str]] = None) -> None:
    """Write top-level ``gap_*`` variables into every GaPHook of the config.

    A config's ``custom_hooks = [dict(type='GaPHook', sparsity=gap_sparsity)]``
    captures the value of ``gap_sparsity`` when the file is read, so
    ``--cfg-options gap_sparsity=0.9`` alone would not reach the hook. The
    tools call this with the keys given on the command line.

    Args:
        cfg (Config): The merged config, changed in place.
        changed (Iterable[str], optional): The ``--cfg-options`` keys. Only
            these variables are propagated, so an explicit
            ``custom_hooks.0.sparsity=...`` is never overwritten. None
            propagates every ``gap_*`` variable the config defines.

    Raises:
        GaPConfigError: If ``changed`` holds a top-level ``gap_*`` key that
            is none of :data:`GAP_CFG_VARIABLES`: a typo such as
            ``gap_sparsty``, or a config variable such as ``gap_period``
            whose value the file already copied where it is used, so that
            overriding it would silently change nothing.
    """
    if changed is not None:
        unknown = sorted(k for k in changed
                         if k.startswith('gap_') and '.' not in k
                         and k not in GAP_CFG_VARIABLES)
        if unknown:
            key = unknown[0]
            hint = _did_you_mean(key, GAP_CFG_VARIABLES)
            raise GaPConfigError(
                f'--cfg-options {key}: only {", ".join(GAP_CFG_VARIABLES)} '
                f'reach the GaPHook from the command line.{hint} Set other '
                f'hook options directly, e.g. custom_hooks.0.schedule.'
                f'period=100.')
    keys = set(GAP_CFG_VARIABLES) if changed is None else \
        set(changed) & set(GAP_CFG_VARIABLES)
    for key in keys:
        if key in cfg:
            for hook in _gap_hooks(cfg):
                hook[GAP_CFG_VARIABLES[key]] = cfg[key]


def merge_cfg_options(cfg: Config, options: Optional[dict]) -> None:
    """Merge ``--cfg-options`` into ``cfg`` as the tools do.

    :meth:`Config.merge_from_dict`, then :func:`propagate_gap_variables` for
    the keys given, so ``gap_sparsity=0.9`` reaches the GaPHook.

    Args:
        cfg (Config): The config, changed in place.
        options (dict, optional): The parsed ``--cfg-options``; None or
            empty changes nothing.

    Raises:
        GaPConfigError: For a ``gap_*`` key that cannot reach the hook.
    """
    if options:
        cfg.merge_from_dict(options)
        propagate_gap_variables(cfg, options.keys())


def check_gap_hook_options(cfg: Config) -> None:
    """Reject unknown GaPHook options with the valid ones listed."""
    from gap_mm.engine import GaPHook
    valid = [
        p for p in inspect.signature(GaPHook.__init__).parameters
        if p != 'self'
    ]
    for hook in _gap_hooks(cfg):
        for key in hook:
            if key in ('type', 'priority') or key in valid:
                continue
            hint = _did_you_mean(key, valid)
            raise GaPConfigError(
                f'GaPHook has no option {key!r}.{hint} Valid options: '
                f'{", ".join(valid)}.')


def _dataset_cfgs(dataset: dict) -> List[dict]:
    """The leaf dataset configs under wrappers (RepeatDataset, ...)."""
    if not isinstance(dataset, dict):
        return []
    if 'datasets' in dataset:
        return [d for sub in dataset['datasets'] for d in _dataset_cfgs(sub)]
    if 'dataset' in dataset:
        return _dataset_cfgs(dataset['dataset'])
    return [dataset]


def check_data_paths(cfg: Config,
                     loaders: Iterable[str] = ('train_dataloader', )
                     ) -> None:
    """Fail early, naming the path, when a dataset's files are missing.

    Checks ``data_root``, ``ann_file`` and each ``data_prefix`` folder of the
    local datasets under ``loaders``. Remote paths (``s3://`` and the like)
    are left to the file backend.
    """
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not isinstance(loader_cfg, dict):
            continue
        for ds in _dataset_cfgs(loader_cfg.get('dataset')):
            root = ds.get('data_root') or ''
            if '://' in str(root):
                continue
            if root and not osp.isdir(root):
                raise GaPConfigError(
                    f'{loader}: data_root {root!r} does not exist '
                    f'(from {osp.abspath(root)}). Point it at your dataset '
                    f"with --cfg-options {loader}.dataset.data_root=PATH, or "
                    f'generate the demo data (see README).')
            ann = ds.get('ann_file')
            if ann:
                path = ann if osp.isabs(ann) else osp.join(root, ann)
                if not osp.isfile(path):
                    raise GaPConfigError(
                        f'{loader}: annotation file {path!r} does not exist '
                        f'(data_root {root!r}, ann_file {ann!r}).')
            for key, prefix in (ds.get('data_prefix') or {}).items():
                if isinstance(prefix, str) and prefix:
                    path = prefix if osp.isabs(prefix) else osp.join(
                        root, prefix)
                    if not osp.isdir(path):
                        raise GaPConfigError(
                            f'{loader}: data_prefix.{key} folder {path!r} '
                            f'does not exist (data_root {root!r}).')
