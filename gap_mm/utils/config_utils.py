# Copyright (c) gap_mm contributors. All rights reserved.
"""Config checks run by the tools before a Runner is built.

They turn the usual failures of a GaP config into one clear message instead
of a traceback from deep inside mmengine or mmdet.
"""
import difflib
import logging
import inspect
import os.path as osp
from typing import Dict, Iterable, List, Optional

from mmengine.config import Config
from mmengine.logging import print_log

from gap_mm.errors import GaPConfigError

#: Top-level config variables and the hook argument each one sets.
GAP_CFG_VARIABLES = {
    'gap_sparsity': 'sparsity',
    'gap_distribution': 'distribution',
    'gap_pattern': 'pattern',
}


def _hook_class(hook: dict):
    """The registered class of a hook config, or None."""
    from mmengine.registry import HOOKS
    kind = hook.get('type') if isinstance(hook, dict) else None
    if isinstance(kind, type):
        return kind
    if not isinstance(kind, str):
        return None
    return HOOKS.get(kind.split('.')[-1])


def _did_you_mean(key: str, valid: Iterable[str], prefix: str = '') -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" Did you mean '{prefix}{close[0]}'?" if close else ''


def sparsity_hooks(cfg: Config) -> List[dict]:
    """The configs of gap_mm's sparsity hooks (GaPHook and every other
    subclass of ``BaseSparsityHook``) among ``cfg.custom_hooks``."""
    from gap_mm.engine.hooks.base_sparsity_hook import BaseSparsityHook
    out = []
    for hook in cfg.get('custom_hooks') or []:
        cls = _hook_class(hook)
        if isinstance(cls, type) and issubclass(cls, BaseSparsityHook):
            out.append(hook)
    return out


def check_gap_variable_keys(changed: Iterable[str]) -> None:
    """Reject top-level ``gap_*`` keys set after the config file was read
    that no hook reads at run time.

    Raises:
        GaPConfigError: For a typo such as ``gap_sparsty``, or a config
            variable such as ``gap_period`` that the file already copied
            where it is used, so that overriding it would silently change
            nothing.
    """
    unknown = sorted(
        k for k in changed if k.startswith('gap_') and '.' not in k
        and k not in GAP_CFG_VARIABLES)
    if unknown:
        key = unknown[0]
        hint = _did_you_mean(key, GAP_CFG_VARIABLES)
        raise GaPConfigError(
            f'--cfg-options {key}: only {", ".join(GAP_CFG_VARIABLES)} '
            f'reach the sparsity hooks at run time.{hint} The config file '
            f'copies its other variables where they are used when it is '
            f'read; set those keys directly, e.g. '
            f'custom_hooks.0.schedule.period=100.')


def changed_top_level_keys(cfg: Config,
                           work_dir: Optional[str] = None
                           ) -> Optional[List[str]]:
    """Top-level keys whose value differs from the config file's (set by
    ``--cfg-options`` under any launcher).

    Returns None when that cannot be told: ``cfg`` was not read from a file,
    or the file lies in ``work_dir``, where MMEngine's Runner dumps the
    merged config under the file's own name (so it may hold the merged
    values by now).
    """
    filename = getattr(cfg, 'filename', None)
    if not filename or not osp.isfile(filename):
        return None
    if work_dir and osp.isdir(work_dir) and osp.samefile(
            osp.dirname(osp.abspath(filename)), work_dir):
        return None
    original = Config.fromfile(filename)
    return [
        k for k in cfg.keys() if k not in original or original[k] != cfg[k]
    ]


def resolve_gap_variables(cfg: Config,
                          given: Dict[str, object],
                          changed: Optional[Iterable[str]] = None,
                          hook: str = 'GaPHook',
                          work_dir: Optional[str] = None) -> Dict[str, object]:
    """The values a sparsity hook takes from the top-level ``gap_*``
    variables of its config.

    A hook option left unset (None) takes the variable's value, so
    ``--cfg-options gap_sparsity=0.9`` reaches it under any launcher:
    gap_mm's ``tools/train.py``, mmdet's, ``mim train``. An option the hook
    was given explicitly wins. A variable changed on the command line that
    cannot reach an explicit option is an error, never silently ignored;
    where it cannot be told whether the variable was changed, a differing
    explicit option is used with a warning.

    Args:
        cfg (Config): The merged config the Runner was built from.
        given (dict): The hook's own values by option (None = unset), e.g.
            ``dict(sparsity=None, distribution='erk', pattern=None)``.
        changed (Iterable[str], optional): Top-level keys set after the
            file was read. None finds them by reading the file again (see
            :func:`changed_top_level_keys`).
        hook (str): The hook's name, for messages.
        work_dir (str, optional): The run's work dir, see
            :func:`changed_top_level_keys`.

    Returns:
        dict: The options that were None and have a variable, with its
        value.

    Raises:
        GaPConfigError: For a changed ``gap_*`` key no hook reads (see
            :func:`check_gap_variable_keys`), or a changed variable whose
            hook option is set explicitly to another value.
    """
    if changed is None:
        changed = changed_top_level_keys(cfg, work_dir)
    known = changed is not None
    changed = list(changed or [])
    check_gap_variable_keys(changed)
    resolved: Dict[str, object] = {}
    for var, option in GAP_CFG_VARIABLES.items():
        if option not in given or var not in cfg:
            continue
        value = cfg[var]
        if given[option] is None:
            resolved[option] = value
        elif given[option] != value and (var in changed or not known):
            if known:
                raise GaPConfigError(
                    f'{var}={value!r} was set after the config was read, '
                    f'but {hook} is given {option}={given[option]!r} '
                    f'explicitly, so the variable cannot reach it. Set the '
                    f'hook option instead (--cfg-options custom_hooks.'
                    f'<index>.{option}=...), or leave {option} out of the '
                    f'hook in the config so that it reads {var}.')
            print_log(
                f'{hook} uses its explicit {option}={given[option]!r}, not '
                f'the config\'s {var}={value!r}; to use {var}, leave '
                f'{option} out of the hook',
                logger='current',
                level=logging.WARNING)
    return resolved


def merge_cfg_options(cfg: Config, options: Optional[dict]) -> None:
    """Merge ``--cfg-options`` into ``cfg`` as the tools do.

    :meth:`Config.merge_from_dict`, after rejecting ``gap_*`` keys that
    cannot reach a hook (:func:`check_gap_variable_keys`), so a typo fails
    before anything is built.

    Args:
        cfg (Config): The config, changed in place.
        options (dict, optional): The parsed ``--cfg-options``; None or
            empty changes nothing.

    Raises:
        GaPConfigError: For a ``gap_*`` key that cannot reach the hook.
    """
    if options:
        check_gap_variable_keys(options.keys())
        cfg.merge_from_dict(options)


def hook_options(cls: type) -> List[str]:
    """The keyword options of a hook class, those its ``__init__`` passes
    on through ``**kwargs`` to its bases included, in MRO order."""
    options: List[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        params = inspect.signature(init).parameters
        options += [
            p for p, v in params.items()
            if p != 'self' and p not in options and v.kind not in (
                v.VAR_POSITIONAL, v.VAR_KEYWORD)
        ]
        if not any(v.kind == v.VAR_KEYWORD for v in params.values()):
            break
    return options


def check_gap_hook_options(cfg: Config) -> None:
    """Reject unknown options of the sparsity hooks, the valid ones listed."""
    for hook in sparsity_hooks(cfg):
        cls = _hook_class(hook)
        valid = hook_options(cls)
        for key in hook:
            if key in ('type', 'priority') or key in valid:
                continue
            hint = _did_you_mean(key, valid)
            raise GaPConfigError(
                f'{cls.__name__} has no option {key!r}.{hint} Valid options: '
                f'{", ".join(valid)}.')


_TRAIN_LOADER = ('train_dataloader', )


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
                     loaders: Iterable[str] = _TRAIN_LOADER) -> None:
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
