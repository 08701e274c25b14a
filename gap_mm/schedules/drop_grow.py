# Copyright (c) gap_mm contributors. All rights reserved.
import math

from gap_mm.registry import SCHEDULES
from .base import BaseSchedule, ScheduleError, check_int

DECAYS = ('cosine', 'constant')


@SCHEDULES.register_module(name=['drop_grow', 'DropGrowSchedule'])
class DropGrowSchedule(BaseSchedule):
    """When a drop-and-grow method (RigL, SET) updates its masks, and which
    fraction of the active weights it moves.

    Updates happen at every step ``t`` with ``begin < t <= end`` and
    ``(t - begin) % interval == 0``; after ``end`` the masks are fixed. The
    fraction is RigL's cosine decay (Evci et al., 2020),
    ``drop_fraction / 2 * (1 + cos(pi * (t - begin) / (end - begin)))``,
    or ``drop_fraction`` throughout (``'constant'``, SET's). Iterations
    only: the grow signal is the gradient of the step just before the
    update.

    Args:
        interval (int): ΔT, steps between updates.
        end (int): Last step that may update (RigL's ``T_end``).
        drop_fraction (float): α in ``(0, 1)``. Defaults to 0.3.
        decay (str): ``'cosine'`` or ``'constant'``. Defaults to
            ``'cosine'``.
        begin (int): Updates start after this step. Defaults to 0.
    """

    def __init__(self,
                 interval: int,
                 end: int,
                 drop_fraction: float = 0.3,
                 decay: str = 'cosine',
                 begin: int = 0) -> None:
        super().__init__(by_epoch=False)
        self.interval = check_int(interval, 'interval', 1)
        self.end = check_int(end, 'end', 1)
        self.begin = check_int(begin, 'begin', 0)
        if self.end <= self.begin:
            raise ScheduleError(f'drop-and-grow needs begin < end, but got '
                                f'begin={begin}, end={end}')
        if isinstance(drop_fraction, bool) or not isinstance(
                drop_fraction, (int, float)) or not 0 < drop_fraction < 1:
            raise ScheduleError(f'drop_fraction must be in (0, 1), but got '
                                f'{drop_fraction!r}')
        if decay not in DECAYS:
            raise ScheduleError(
                f'decay must be one of {DECAYS}, but got {decay!r}')
        self.drop_fraction = float(drop_fraction)
        self.decay = decay

    def is_update(self, t: int) -> bool:
        """Whether the masks change for step ``t``."""
        return self.begin < t <= self.end and (t -
                                               self.begin) % self.interval == 0

    def fraction_at(self, t: int) -> float:
        """The fraction of each layer's active weights moved at ``t``."""
        if self.decay == 'constant':
            return self.drop_fraction
        progress = (t - self.begin) / (self.end - self.begin)
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * progress))

    def required_length(self) -> int:
        return self.end + 1

    def describe_length(self) -> str:
        return f'end {self.end} + 1'

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(interval={self.interval}, end='
                f'{self.end}, drop_fraction={self.drop_fraction}, decay='
                f'{self.decay!r}, begin={self.begin})')
