# Copyright (c) gap_mm contributors. All rights reserved.
"""What RigL and SET share: a fixed sparsity whose masks are rewired."""
from typing import Mapping, Optional

import torch

from gap_mm.errors import GaPConfigError
from .base_sparsity_hook import BaseSparsityHook


class DropGrowHook(BaseSparsityHook):
    """Dynamic sparse training at a fixed sparsity: every ``interval``
    iterations until ``end``, each sparse layer drops the ``k`` active
    weights of smallest magnitude and grows ``k`` inactive ones chosen by
    :meth:`grow_scores`, ``k = round(f(t) * active)`` with the fraction
    ``f`` of :class:`~gap_mm.schedules.DropGrowSchedule`. Grown weights
    start at 0 and their momentum at 0; dropped ones are zeroed with their
    optimizer state. The count of every layer stays exact, and of every
    block of a layer (an attention's q, k and v projections).

    Subclasses implement :meth:`grow_scores` (RigL: the dense gradient,
    SET: random).

    Args:
        end (int | float): Last iteration that may update; the masks are
            fixed after it. Required. A float in ``(0, 1]`` (here and for
            ``begin``, ``interval``) is a fraction of the run's iterations.
        interval (int | float): ΔT, iterations between updates.
            Defaults to 100.
        drop_fraction (float): α in ``(0, 1)``. Defaults to 0.3.
        decay (str): ``'cosine'`` (RigL) or ``'constant'`` (SET).
        begin (int | float): Updates start after this iteration.
            Defaults to 0.
        init (str): The masks at the start; ``'random'`` as in the papers,
            or ``'magnitude'``. Defaults to ``'random'``.
        **kwargs: The options of :class:`BaseSparsityHook`.
    """

    default_decay = 'cosine'
    supports_nm = False
    run_fractions = dict(begin=1, end=1, interval=1)

    def __init__(self,
                 end: Optional[int] = None,
                 interval: int = 100,
                 drop_fraction: float = 0.3,
                 decay: Optional[str] = None,
                 begin: int = 0,
                 init: str = 'random',
                 **kwargs) -> None:
        name = type(self).__name__
        if end is None:
            raise GaPConfigError(
                f'{name} needs end=..., the last iteration that rewires the '
                f'masks (RigL uses 3/4 of the run)')
        if init == 'none':
            raise GaPConfigError(f"{name} starts sparse: init must be "
                                 f"'random' or 'magnitude', not 'none'")
        super().__init__(init=init, **kwargs)
        self.configure_schedule(
            dict(
                type='DropGrowSchedule',
                interval=interval,
                end=end,
                drop_fraction=drop_fraction,
                decay=decay or self.default_decay,
                begin=begin))

    def before_train(self, runner) -> None:
        counts = getattr(runner.optim_wrapper, '_accumulative_counts', 1)
        if self.schedule.interval % counts:
            raise GaPConfigError(
                f'{type(self).__name__} interval='
                f'{self.schedule.interval} must be a multiple of the '
                f'optimizer wrapper\'s accumulative_counts={counts}: the '
                f'masks change only after a real optimizer step')
        super().before_train(runner)

    def grow_scores(self, runner,
                    step: int) -> Optional[Mapping[str, torch.Tensor]]:
        """Scores of the inactive weights by layer name (larger grows), or
        None to skip this update. Each layer's is read once, when that
        layer is updated, so a mapping that computes them on access holds
        one layer's at a time."""
        raise NotImplementedError

    def update(self, runner, step: int) -> None:
        if not self.schedule.is_update(step):
            return
        scores = self.grow_scores(runner, step)
        if scores is None:
            return
        fraction = self.schedule.fraction_at(step)
        newly_pruned, newly_grown, moved = self.sparsifier.drop_and_grow(
            fraction, lambda name, param: scores[name])
        self.apply_event(
            runner,
            step,
            pruned=newly_pruned,
            grown=newly_grown,
            what=f'drop and grow {moved} weights ({fraction:.4f} of the '
            f'active)',
            event='drop_grow',
            moved=moved,
            fraction=float(fraction))
