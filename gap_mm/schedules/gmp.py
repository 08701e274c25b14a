# Copyright (c) gap_mm contributors. All rights reserved.
from gap_mm.registry import SCHEDULES
from gap_mm.sparsity.distribution import check_sparsity
from .base import BaseSchedule, ScheduleError, check_int


@SCHEDULES.register_module(name=['cubic', 'CubicSparsitySchedule'])
class CubicSparsitySchedule(BaseSchedule):
    """Gradual magnitude pruning's ramp (Zhu & Gupta, 2017).

    The sparsity rises from ``initial_sparsity`` at step ``begin`` to the
    target ``s_f`` at step ``end`` as

    ``s_t = s_f + (s_i - s_f) * (1 - (t - begin) / (end - begin)) ** 3``

    with a prune at ``begin`` and every ``interval`` steps after it, and
    always one at ``end``; after ``end`` the masks are fixed (the
    fine-tune). A pure function of ``t``.

    Args:
        begin (int): First prune step.
        end (int): Step of the last prune, at the target.
        interval (int): Steps between prunes.
        initial_sparsity (float): ``s_i`` in ``[0, 1)``. Defaults to 0.
        by_epoch (bool): Count epochs instead of iterations.

    Examples:
        >>> s = CubicSparsitySchedule(begin=0, end=4, interval=2)
        >>> [round(s.sparsity_at(t, 0.8), 3) for t in range(6)]
        [0.0, 0.0, 0.7, 0.7, 0.8, 0.8]
    """

    def __init__(self,
                 begin: int,
                 end: int,
                 interval: int,
                 initial_sparsity: float = 0.0,
                 by_epoch: bool = False) -> None:
        super().__init__(by_epoch)
        self.begin = check_int(begin, 'begin', 0)
        self.end = check_int(end, 'end', 1)
        self.interval = check_int(interval, 'interval', 1)
        if self.end <= self.begin:
            raise ScheduleError(
                f'the cubic ramp needs begin < end, but got begin={begin}, '
                f'end={end}')
        try:
            self.initial_sparsity = check_sparsity(initial_sparsity,
                                                   'initial_sparsity')
        except ValueError as err:
            raise ScheduleError(str(err)) from err

    def is_prune_step(self, t: int) -> bool:
        """Whether the masks are re-selected for step ``t``."""
        return self.begin <= t <= self.end and (
            (t - self.begin) % self.interval == 0 or t == self.end)

    def sparsity_at(self, t: int, final: float) -> float:
        """The sparsity of the last prune at or before step ``t``
        (``initial_sparsity`` before ``begin``)."""
        if t < self.begin:
            return self.initial_sparsity
        if t >= self.end:
            return final
        last = self.begin + (t - self.begin) // self.interval * self.interval
        frac = (last - self.begin) / (self.end - self.begin)
        return final + (self.initial_sparsity - final) * (1 - frac)**3

    def num_prunes(self) -> int:
        """Prune events from ``begin`` to ``end``, both included."""
        span = self.end - self.begin
        return span // self.interval + 1 + (span % self.interval != 0)

    def required_length(self) -> int:
        # the last prune must be followed by at least one trained step
        return self.end + 1

    def describe_length(self) -> str:
        return f'end {self.end} + 1'

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(begin={self.begin}, end={self.end}, '
                f'interval={self.interval}, initial_sparsity='
                f'{self.initial_sparsity}, by_epoch={self.by_epoch})')
