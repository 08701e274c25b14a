# Copyright (c) gap_mm contributors. All rights reserved.
from typing import Optional

from mmengine.registry import HOOKS

from gap_mm.errors import GaPConfigError
from gap_mm.schedules import CubicSparsitySchedule
from .base_sparsity_hook import BaseSparsityHook


@HOOKS.register_module()
class GMPHook(BaseSparsityHook):
    """Gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune",
    2017).

    Training starts dense (or at ``initial_sparsity``); from ``begin`` to
    ``end`` the sparsity follows the cubic ramp of
    :class:`~gap_mm.schedules.CubicSparsitySchedule`, pruning every layer by
    magnitude every ``interval`` steps; pruned weights stay 0 (their
    optimizer state is zeroed) and the masks are fixed after ``end``. The
    per-layer targets at each prune follow the hook's distribution, so the
    counts are exact at every event.

    Args:
        begin (int | float): First prune step. Defaults to 0.
        end (int | float): Step of the last prune, at ``sparsity``; the run
            must be longer (the rest is a fine-tune).
        interval (int | float): Steps between prunes. Defaults to 100.
            A float in ``(0, 1]`` for any of these is a fraction of the run
            (``end=0.75``), so one config fits any batch size.
        initial_sparsity (float): Sparsity of the first prune, in
            ``[0, sparsity]``. Defaults to 0 (start dense).
        by_epoch (bool): Count epochs instead of iterations.
            Defaults to False.
        init (str, optional): The masks at the start. None: dense when
            ``initial_sparsity`` is 0, else by magnitude at it.
        **kwargs: The options of :class:`BaseSparsityHook` (``sparsity``,
            ``distribution``, ``exclude``, ...); N:M patterns are not
            supported.

    Examples:
        >>> custom_hooks = [dict(type='GMPHook', sparsity=0.8, begin=0,
        >>>                      end=1500, interval=100)]
    """

    method_name = 'GMP'
    supports_nm = False
    run_fractions = dict(begin=1, end=1, interval=1)

    def __init__(self,
                 end: Optional[int] = None,
                 begin: int = 0,
                 interval: int = 100,
                 initial_sparsity: float = 0.0,
                 by_epoch: bool = False,
                 init: Optional[str] = None,
                 **kwargs) -> None:
        if end is None:
            raise GaPConfigError(
                'GMPHook needs end=..., the step of the last prune (e.g. 3/4 '
                'of the run); the steps after it fine-tune with fixed masks')
        if init is None:
            init = 'none' if initial_sparsity == 0 else 'magnitude'
        super().__init__(init=init, **kwargs)
        self.configure_schedule(
            dict(
                type='CubicSparsitySchedule',
                begin=begin,
                end=end,
                interval=interval,
                initial_sparsity=initial_sparsity,
                by_epoch=by_epoch))

    def build_schedule(self) -> CubicSparsitySchedule:
        schedule = super().build_schedule()
        if schedule.initial_sparsity > self.sparsity:
            raise GaPConfigError(
                f'GMPHook initial_sparsity={schedule.initial_sparsity} is '
                f'above the target sparsity {self.sparsity}; the ramp only '
                f'rises')
        return schedule

    def initialize_masks(self, runner, step: int) -> None:
        self.sparsifier.set_sparsity(
            self.schedule.sparsity_at(step, self.sparsity))
        super().initialize_masks(runner, step)

    def update(self, runner, step: int) -> None:
        """Prune every layer to the ramp's sparsity at a prune step."""
        if not self.schedule.is_prune_step(step):
            return
        target = self.schedule.sparsity_at(step, self.sparsity)
        if target == 0:
            return  # nothing to prune yet: stay dense
        self.sparsifier.set_sparsity(target)
        pruned = self.sparsifier.prune(range(self.sparsifier.num_partitions))
        self.apply_event(
            runner,
            step,
            pruned=pruned,
            what=f'prune to {target:.4f}',
            event='prune',
            target=float(target))
