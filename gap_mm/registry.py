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
from mmengine.registry import Registry

SCHEDULES = Registry('sparsity schedule', locations=['gap_mm.schedules'])
SPARSIFIERS = Registry('sparsifier', locations=['gap_mm.sparsity'])
SCORES = Registry('importance score', locations=['gap_mm.sparsity'])

__all__ = ['SCHEDULES', 'SCORES', 'SPARSIFIERS']
