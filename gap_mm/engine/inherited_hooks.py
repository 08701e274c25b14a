# Copyright (c) gap_mm contributors. All rights reserved.
"""The hooks a config's own ``custom_hooks`` dropped from the configs it
inherits."""
import os.path as osp
from typing import List, Optional, Tuple

from mmengine.config import Config


def _hook_type(hook) -> Optional[str]:
    """A hook config's type name, without a scope (``'mmdet.EMAHook'`` ->
    ``'EMAHook'``)."""
    kind = hook.get('type') if isinstance(hook, dict) else None
    if isinstance(kind, type):
        return kind.__name__
    return kind.split('.')[-1] if isinstance(kind, str) else None


def replaced_base_hooks(cfg: Optional[Config]) -> List[Tuple[str, str]]:
    """The hooks of a base config's ``custom_hooks`` that the config's own
    ``custom_hooks`` dropped.

    A list in a child config replaces its base's list instead of extending
    it, so a config that inherits an mmdet config with ``custom_hooks``
    (YOLOX's ``YOLOXModeSwitchHook``, ``SyncNormHook`` and ``EMAHook``,
    RTMDet's ``EMAHook`` and ``PipelineSwitchHook``) and writes
    ``custom_hooks = [dict(type='GaPHook', ...)]`` trains without them. It
    should write ``custom_hooks = _base_.custom_hooks + [dict(type=
    'GaPHook', ...)]``.

    Each direct base of the file ``cfg`` was read from is read again, with
    its own bases; a config not read from a file, or a base that cannot be
    read, gives nothing (this is a warning, never an error).

    Returns:
        list[tuple[str, str]]: ``(base, message)`` per base that lost
        hooks.
    """
    filename = getattr(cfg, 'filename', None)
    if not filename or not osp.isfile(filename):
        return []
    try:
        bases = Config._get_base_files(filename)
    except Exception:  # noqa: B902 (any parse failure: say nothing)
        return []
    kept = {_hook_type(h) for h in cfg.get('custom_hooks') or []}
    found = []
    for base in bases:
        try:
            path, _ = Config._get_cfg_path(base, filename)
            hooks = Config.fromfile(path).get('custom_hooks') or []
        except Exception:  # noqa: B902
            continue
        lost = [t for t in (_hook_type(h) for h in hooks)
                if t and t not in kept]
        if lost:
            found.append((base, (
                f'the custom_hooks of this config replaced those of its base '
                f'{base}, so {", ".join(lost)} will not run (a list in a '
                f'child config replaces its base\'s). To keep them, append '
                f'to the base\'s list: custom_hooks = _base_.custom_hooks + '
                f"[dict(type='GaPHook', ...)]")))
    return found
