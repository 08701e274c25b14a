# Copyright (c) gap_mm contributors. All rights reserved.
from typing import Dict, Mapping, Type, Union

from .base import BaseGaPSchedule, ScheduleError
from .cyclic import CyclicGaPSchedule
from .static import StaticSchedule

SCHEDULES: Dict[str, Type[BaseGaPSchedule]] = {
    'cyclic': CyclicGaPSchedule,
    'CyclicGaPSchedule': CyclicGaPSchedule,
    'static': StaticSchedule,
    'StaticSchedule': StaticSchedule,
}


def build_schedule(cfg: Union[Mapping, BaseGaPSchedule],
                   num_partitions: int) -> BaseGaPSchedule:
    """Build a schedule from ``dict(type='cyclic', period=..., ...)``.

    ``num_partitions`` comes from the sparsifier; a ``num_partitions`` in
    ``cfg`` must agree with it.
    """
    if isinstance(cfg, BaseGaPSchedule):
        schedule = cfg
    else:
        if not isinstance(cfg, Mapping) or 'type' not in cfg:
            raise ScheduleError(f"schedule must be a dict with a 'type' in "
                                f'{sorted(SCHEDULES)}, but got {cfg!r}')
        args = dict(cfg)
        kind = args.pop('type')
        if kind not in SCHEDULES:
            raise ScheduleError(f'unknown GaP schedule type {kind!r}; valid '
                                f'types are {sorted(SCHEDULES)}')
        args.setdefault('num_partitions', num_partitions)
        try:
            schedule = SCHEDULES[kind](**args)
        except TypeError as err:
            raise ScheduleError(
                f'bad arguments for GaP schedule {kind!r}: {err}') from err
    if schedule.num_partitions != num_partitions:
        raise ScheduleError(
            f'the schedule has num_partitions={schedule.num_partitions} but '
            f'the model is split into {num_partitions} partitions')
    return schedule
