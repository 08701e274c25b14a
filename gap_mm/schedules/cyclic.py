# Copyright (c) gap_mm contributors. All rights reserved.
from typing import FrozenSet, Optional

from gap_mm.registry import SCHEDULES
from .base import BaseGaPSchedule, ScheduleError, check_int


@SCHEDULES.register_module(name=['cyclic', 'CyclicGaPSchedule'])
class CyclicGaPSchedule(BaseGaPSchedule):
    """Cyclic grow-and-prune (C-GaP).

    After ``begin`` sparse steps, ``num_rounds`` rounds follow. In each round
    partition ``k = 0 .. K-1`` is dense for ``period`` steps and then pruned
    back, so step ``t`` in the rounds has partition
    ``((t - begin) // period) % K`` dense. After the rounds every partition
    is sparse and the masks stay fixed: the fine-tune.

    Args:
        num_partitions (int): K.
        period (int): T, steps each partition stays dense.
        num_rounds (int): R, passes over all partitions.
        finetune (int, optional): Steps of the final fine-tune. None means
            "whatever the run has left", which must be >= 0.
        begin (int): Sparse steps before the first grow. Defaults to 0.
        by_epoch (bool): Count epochs instead of iterations.

    Examples:
        >>> s = CyclicGaPSchedule(num_partitions=2, period=3, num_rounds=1)
        >>> [sorted(s.dense_partitions(t)) for t in range(7)]
        [[0], [0], [0], [1], [1], [1], []]
    """

    def __init__(self,
                 num_partitions: int,
                 period: int,
                 num_rounds: int,
                 finetune: Optional[int] = None,
                 begin: int = 0,
                 by_epoch: bool = False) -> None:
        super().__init__(num_partitions, by_epoch)
        self.period = check_int(period, 'period', 1)
        self.num_rounds = check_int(num_rounds, 'num_rounds', 1)
        self.finetune = None if finetune is None else check_int(
            finetune, 'finetune', 0)
        self.begin = check_int(begin, 'begin', 0)

    @property
    def gap_end(self) -> int:
        """First step after the last round."""
        return self.begin + self.num_partitions * self.num_rounds * \
            self.period

    def dense_partitions(self, t: int, group: int = 0) -> FrozenSet[int]:
        if self.begin <= t < self.gap_end:
            return frozenset({
                ((t - self.begin) // self.period) % self.num_partitions
            })
        return frozenset()

    def phase(self, t: int, group: int = 0) -> str:
        if t < self.begin:
            return 'sparse'
        return 'grow' if t < self.gap_end else 'finetune'

    def round_at(self, t: int) -> int:
        if self.begin <= t < self.gap_end:
            return (t - self.begin) // (self.period * self.num_partitions)
        return -1

    def required_length(self) -> int:
        return self.gap_end + (self.finetune or 0)

    def describe_length(self) -> str:
        parts = [] if not self.begin else [f'begin {self.begin}']
        parts.append(f'K {self.num_partitions} x R {self.num_rounds} x '
                     f'T {self.period}')
        if self.finetune is not None:
            parts.append(f'finetune {self.finetune}')
        return ' + '.join(parts)

    def check_fits(self, max_steps: int) -> None:
        super().check_fits(max_steps)
        if self.finetune is None and self.gap_end >= max_steps:
            raise ScheduleError(
                f'The GaP schedule ({self.describe_length()} = '
                f'{self.gap_end} {self.unit}) leaves no fine-tune in a run of '
                f'{max_steps} {self.unit}; the last prune would never be '
                f'trained after. Shorten the schedule or set finetune=0 '
                f'explicitly.')

    def finetune_start(self) -> Optional[int]:
        return self.gap_end

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_partitions={self.num_partitions}'
                f', period={self.period}, num_rounds={self.num_rounds}, '
                f'finetune={self.finetune}, begin={self.begin}, '
                f'by_epoch={self.by_epoch})')
