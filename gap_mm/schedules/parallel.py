# Copyright (c) gap_mm contributors. All rights reserved.
from typing import FrozenSet, Optional

from gap_mm.registry import SCHEDULES
from .base import BaseGaPSchedule, ScheduleError, check_int


@SCHEDULES.register_module(name=['parallel', 'ParallelGaPSchedule'])
class ParallelGaPSchedule(BaseGaPSchedule):
    """Parallel grow-and-prune (P-GaP) over K rank groups.

    During the ``num_rounds`` rounds of ``period`` steps each, rank group
    ``g`` trains with partition ``g`` dense (one group per partition); at
    the end of every round the groups' models are combined into one
    (partition ``k`` from group ``k``, pruned back), and the next round
    starts from it. After the rounds all ranks fine-tune one model with
    every mask fixed. A pure function of the step and the group.

    Args:
        num_partitions (int): K, also the number of rank groups.
        period (int): T, steps of a round.
        num_rounds (int): R.
        finetune (int, optional): Steps of the fine-tune; None means what
            the run has left, which must be at least one step.
        by_epoch (bool): Count epochs instead of iterations.

    Examples:
        >>> s = ParallelGaPSchedule(num_partitions=2, period=3, num_rounds=2)
        >>> [sorted(s.dense_partitions(t, group=1)) for t in range(7)]
        [[1], [1], [1], [1], [1], [1], []]
        >>> [t for t in range(8) if s.is_combine(t)]
        [3, 6]
    """

    def __init__(self,
                 num_partitions: int,
                 period: int,
                 num_rounds: int,
                 finetune: Optional[int] = None,
                 by_epoch: bool = False) -> None:
        super().__init__(num_partitions, by_epoch)
        self.period = check_int(period, 'period', 1)
        self.num_rounds = check_int(num_rounds, 'num_rounds', 1)
        self.finetune = None if finetune is None else check_int(
            finetune, 'finetune', 0)

    @property
    def gap_end(self) -> int:
        """First step of the fine-tune (the last combine's step)."""
        return self.num_rounds * self.period

    def dense_partitions(self, t: int, group: int = 0) -> FrozenSet[int]:
        if not 0 <= group < self.num_partitions:
            raise ScheduleError(f'group {group} out of range for '
                                f'{self.num_partitions} rank groups')
        return frozenset({group}) if t < self.gap_end else frozenset()

    def is_combine(self, t: int) -> bool:
        """Whether the groups' models are combined before step ``t``."""
        return 0 < t <= self.gap_end and t % self.period == 0

    def phase(self, t: int, group: int = 0) -> str:
        return 'grow' if t < self.gap_end else 'finetune'

    def round_at(self, t: int) -> int:
        return t // self.period if t < self.gap_end else -1

    def required_length(self) -> int:
        return self.gap_end + (self.finetune or 0)

    def describe_length(self) -> str:
        parts = [f'R {self.num_rounds} x T {self.period}']
        if self.finetune is not None:
            parts.append(f'finetune {self.finetune}')
        return ' + '.join(parts)

    def check_fits(self, max_steps: int) -> None:
        super().check_fits(max_steps)
        if self.finetune is None and self.gap_end >= max_steps:
            raise ScheduleError(
                f'The P-GaP schedule ({self.describe_length()} = '
                f'{self.gap_end} {self.unit}) leaves no fine-tune in a run of '
                f'{max_steps} {self.unit}; the last combine would never be '
                f'trained after. Shorten the schedule or set finetune=0.')

    def finetune_start(self) -> Optional[int]:
        return self.gap_end

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_partitions={self.num_partitions}'
                f', period={self.period}, num_rounds={self.num_rounds}, '
                f'finetune={self.finetune}, by_epoch={self.by_epoch})')
