# Copyright (c) gap_mm contributors. All rights reserved.
"""gap_mm's own registries, MMEngine :class:`~mmengine.registry.Registry`
objects like mmdet's.

Hooks and optimizer wrappers go into MMEngine's root ``HOOKS`` and
``OPTIM_WRAPPERS`` (so every ``default_scope`` finds them); the pieces a hook
is assembled from live here, so a config names them with ``dict(type=...)``
and a user's ``custom_imports`` module can add its own:

* ``SCHEDULES``: *when* masks change (``'cyclic'``, ``'static'``, ...);
* ``SPARSIFIERS``: the mask policy holding the masks (``MagnitudeSparsifier``);
* ``SCORES``: the importance a prune ranks weights by (``'magnitude'``,
  ``'random'``).

Examples:
    >>> from gap_mm.registry import SCORES
    >>> @SCORES.register_module(name='taylor')
    ... class TaylorScore:
    ...     def __call__(self, name, param):
    ...         return (param.detach() * param.grad).abs()
    >>> # custom_hooks = [dict(type='GaPHook', sparsifier=dict(
    >>> #     type='MagnitudeSparsifier', score=dict(type='taylor')), ...)]
"""
from typing import Any, Mapping, Optional

from mmengine.registry import Registry

SCHEDULES = Registry('sparsity schedule', locations=['gap_mm.schedules'])
SPARSIFIERS = Registry('sparsifier', locations=['gap_mm.sparsity'])
SCORES = Registry('importance score', locations=['gap_mm.sparsity'])


def build_registered(registry: Registry,
                     cfg: dict,
                     what: str,
                     error: type,
                     default_args: Optional[dict] = None,
                     base: Optional[type] = None) -> Any:
    """Build ``cfg`` from ``registry``, turning every failure into
    ``error`` with a message a config author can act on.

    Args:
        registry (Registry): One of the registries above.
        cfg (dict): ``dict(type=..., **kwargs)``.
        what (str): How messages name the thing, e.g. ``'schedule'``.
        error (type): The exception class to raise (a ``GaPConfigError``).
        default_args (dict, optional): Passed on to :meth:`Registry.build`.
        base (type, optional): The class the result must be an instance of.

    Raises:
        error: For a config without a type, an unknown type (the registered
            ones listed), arguments the class does not take, or a result
            that is not a ``base``.
    """
    valid = sorted(registry.module_dict)
    if not isinstance(cfg, Mapping) or 'type' not in cfg:
        raise error(f"{what} must be a dict with a 'type' in {valid}, but "
                    f'got {cfg!r}')
    kind = cfg['type']
    if not isinstance(kind, type) and registry.get(kind) is None:
        raise error(f'unknown {what} type {kind!r}; valid types are {valid}')
    cfg = dict(cfg)
    # our own scope: under a Runner's default scope ('mmdet', ...) MMEngine
    # would otherwise warn that it finds no such child registry
    cfg.setdefault('_scope_', registry.scope)
    try:
        built = registry.build(cfg, default_args=default_args)
    except TypeError as err:
        raise error(f'bad arguments for {what} {kind!r}: {err}') from err
    if base is not None and not isinstance(built, base):
        raise error(f'{what} type {kind!r} built a {type(built).__name__}, '
                    f'which is not a {base.__name__}')
    return built


__all__ = ['SCHEDULES', 'SCORES', 'SPARSIFIERS', 'build_registered']
