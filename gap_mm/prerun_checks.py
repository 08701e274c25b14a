# Copyright (c) gap_mm contributors. All rights reserved.
"""Config checks run by the tools before a Runner is built.

They turn the usual failures of a GaP config into one clear message instead
of a traceback from deep inside mmengine or mmdet.
"""
import inspect
import json
import os
import os.path as osp
from typing import Iterable, List, Optional

from mmengine.config import Config
from mmengine.utils import import_modules_from_strings

from gap_mm.engine.gap_variables import check_gap_variable_keys, did_you_mean
from gap_mm.engine.inherited_hooks import replaced_base_hooks  # noqa: F401
from gap_mm.errors import GaPConfigError


def _hook_class(hook: dict):
    """The registered class of a hook config, or None."""
    from mmengine.registry import HOOKS
    kind = hook.get('type') if isinstance(hook, dict) else None
    if isinstance(kind, type):
        return kind
    if not isinstance(kind, str):
        return None
    return HOOKS.get(kind.split('.')[-1])


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


def imports_gap_mm(cfg: Config) -> bool:
    """Whether ``cfg.custom_imports`` imports gap_mm (or a module of it), so
    that mmdet's own tools, which read it, run with gap_mm too."""
    imports = (cfg.get('custom_imports') or {}).get('imports') or []
    if isinstance(imports, str):
        imports = [imports]
    return any(m == 'gap_mm' or str(m).startswith('gap_mm.') for m in imports)


def merge_cfg_options(cfg: Config, options: Optional[dict]) -> None:
    """Merge ``--cfg-options`` into ``cfg`` as the tools do.

    :meth:`Config.merge_from_dict`, after rejecting ``gap_*`` keys that
    cannot reach a hook (:func:`check_gap_variable_keys`), so a typo fails
    before anything is built. When the options set ``custom_imports``, its
    modules are imported as :meth:`Config.fromfile` imports a file's (the
    file's were imported when it was read, before the options merged).

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
        if any(k.split('.')[0] == 'custom_imports' for k in options):
            import_modules_from_strings(**cfg.custom_imports)


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
            hint = did_you_mean(key, valid)
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
                if 'coco' in str(ds.get('type', '')).lower():
                    check_coco_annotations(path, loader)
            for key, prefix in (ds.get('data_prefix') or {}).items():
                if isinstance(prefix, str) and prefix:
                    path = prefix if osp.isabs(prefix) else osp.join(
                        root, prefix)
                    if not osp.isdir(path):
                        raise GaPConfigError(
                            f'{loader}: data_prefix.{key} folder {path!r} '
                            f'does not exist (data_root {root!r}).')


#: COCO annotation files up to this size are parsed in full before a run;
#: a larger one is checked for truncation only (its dataset parses it).
COCO_PARSE_LIMIT = 64 * 2**20
#: What a COCO annotation file must hold.
COCO_KEYS = ('images', 'annotations', 'categories')


def check_coco_annotations(path: str, where: str = 'dataset') -> None:
    """Fail early, naming the file and what is wrong, when a COCO annotation
    file is empty, truncated, not JSON, or lacks ``images``,
    ``annotations`` or ``categories`` (lists)."""
    size = os.path.getsize(path)
    if size == 0:
        raise GaPConfigError(f'{where}: annotation file {path!r} is empty')
    with open(path, 'rb') as f:
        f.seek(max(0, size - 64))
        tail = f.read().rstrip()
    if not tail.endswith(b'}'):  # JSON that ends so is an object
        raise GaPConfigError(
            f'{where}: annotation file {path!r} is truncated or not a COCO '
            f'JSON object: it does not end with "}}" ({size:,} bytes)')
    if size > COCO_PARSE_LIMIT:
        return
    try:
        with open(path, 'rb') as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GaPConfigError(
            f'{where}: annotation file {path!r} is not valid JSON: '
            f'{err}') from err
    missing = [k for k in COCO_KEYS if not isinstance(data.get(k), list)]
    if missing:
        raise GaPConfigError(
            f'{where}: annotation file {path!r} has no list of '
            f'{" / ".join(repr(k) for k in missing)}: a COCO annotation '
            f'file holds {", ".join(COCO_KEYS)} (its keys: '
            f'{sorted(data)[:10]})')
