# Copyright (c) gap_mm contributors. All rights reserved.
from typing import Mapping, Union

from gap_mm.registry import SCHEDULES, build_registered
from .base import BaseGaPSchedule, ScheduleError


def build_schedule(cfg: Union[Mapping, BaseGaPSchedule],
                   num_partitions: int) -> BaseGaPSchedule:
    """Build a schedule from ``dict(type='cyclic', period=..., ...)``.

    The type is looked up in :data:`gap_mm.registry.SCHEDULES`, so a
    schedule registered by a user's ``custom_imports`` module works too.
    ``num_partitions`` comes from the sparsifier; a ``num_partitions`` in
    ``cfg`` must agree with it.

    Raises:
        ScheduleError: For an unknown type (the registered ones listed),
            bad arguments, or a partition count that does not match.
    """
    if isinstance(cfg, BaseGaPSchedule):
        schedule = cfg
    else:
        schedule = build_registered(
            SCHEDULES,
            cfg,
            'schedule',
            ScheduleError,
            default_args=dict(num_partitions=num_partitions),
            base=BaseGaPSchedule)
    if schedule.num_partitions != num_partitions:
        raise ScheduleError(
            f'the schedule has num_partitions={schedule.num_partitions} but '
            f'the model is split into {num_partitions} partitions')
    return schedule
