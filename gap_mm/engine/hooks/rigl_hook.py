# Copyright (c) gap_mm contributors. All rights reserved.
from typing import Dict, Optional

import torch
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..optimizers import StepStage
from .drop_grow_hook import DropGrowHook


class _DenseGradients(StepStage):
    """Keeps ``|grad|`` of the sparse layers, read before the wrapper masks
    it, at the iterations that precede a RigL update."""

    def __init__(self, hook: 'RigLHook') -> None:
        self.hook = hook
        self.grads: Optional[Dict[str, torch.Tensor]] = None

    @torch.no_grad()
    def before_mask(self, iteration: int) -> None:
        hook = self.hook
        if not hook.schedule.is_update(iteration + 1):
            return
        sp = hook.sparsifier
        grads = {}
        for name in sp.names:
            if not sp.is_sparse(name):
                continue
            grad = sp.params[name].grad
            grads[name] = torch.zeros_like(sp.params[name]) \
                if grad is None else grad.detach().abs()
        self.grads = grads


@HOOKS.register_module()
class RigLHook(DropGrowHook):
    """RigL, "Rigging the Lottery" (Evci et al., ICML 2020).

    A :class:`DropGrowHook` whose grow signal is the dense gradient: at the
    iteration before each update, the optimizer wrapper's step pipeline
    hands this hook ``|grad|`` of every sparse layer as backward computed
    it, before the masks zero it (DDP has already averaged it over the
    ranks, so every rank grows the same weights). No second backward is
    run. The inactive weights of largest ``|grad|`` are grown, at 0. Under
    AMP the gradient is still loss-scaled, which does not change the
    ranking; an update whose gradients are not finite is skipped.

    Args:
        **kwargs: The options of :class:`DropGrowHook` (``end``,
            ``interval``, ``drop_fraction``, ``decay='cosine'``, ``begin``,
            ``init='random'``) and of :class:`BaseSparsityHook`.

    Examples:
        >>> custom_hooks = [dict(type='RigLHook', sparsity=0.8,
        >>>                      distribution='erk', interval=100, end=1500)]
    """

    method_name = 'RigL'

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._stage = _DenseGradients(self)

    def step_stage(self) -> StepStage:
        return self._stage

    def grow_scores(self, runner,
                    step: int) -> Optional[Dict[str, torch.Tensor]]:
        grads, self._stage.grads = self._stage.grads, None
        if grads is None:
            print_log(
                f'RigL: no gradients were captured before iteration {step} '
                f'(no optimizer step ran); skipping this update',
                logger='current',
                level=30)
            return None
        if not all(bool(torch.isfinite(g).all()) for g in grads.values()):
            print_log(
                f'RigL: the gradients before iteration {step} are not '
                f'finite (an AMP overflow?); skipping this update',
                logger='current',
                level=30)
            return None
        return grads
