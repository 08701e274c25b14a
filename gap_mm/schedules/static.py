# Copyright (c) gap_mm contributors. All rights reserved.
from typing import FrozenSet

from gap_mm.registry import SCHEDULES
from .base import BaseGaPSchedule


@SCHEDULES.register_module(name=['static', 'StaticSchedule'])
class StaticSchedule(BaseGaPSchedule):
    """Masks fixed from the first step: the sparse-from-scratch baseline.

    Every partition is sparse at every step; the masks chosen from the
    initial weights never change.
    """

    def dense_partitions(self, t: int, group: int = 0) -> FrozenSet[int]:
        return frozenset()

    def phase(self, t: int, group: int = 0) -> str:
        return 'sparse'

    def required_length(self) -> int:
        return 0

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_partitions={self.num_partitions}'
                f', by_epoch={self.by_epoch})')
