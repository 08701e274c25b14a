# Copyright (c) gap_mm contributors. All rights reserved.
"""When things happen: pure functions of the iteration or epoch.

Schedules are registered in :data:`gap_mm.registry.SCHEDULES`.
"""
from gap_mm.registry import SCHEDULES
from .base import BaseGaPSchedule, BaseSchedule, ScheduleError, Segment
from .builder import build_schedule
from .cyclic import CyclicGaPSchedule
from .drop_grow import DropGrowSchedule
from .gmp import CubicSparsitySchedule
from .greg import GRegSchedule
from .parallel import ParallelGaPSchedule
from .scs import LAMBDA_CONTROLLERS, SCSSchedule, next_lambda
from .static import StaticSchedule

__all__ = [
    'LAMBDA_CONTROLLERS', 'BaseGaPSchedule', 'BaseSchedule',
    'CubicSparsitySchedule',
    'CyclicGaPSchedule', 'DropGrowSchedule', 'GRegSchedule',
    'ParallelGaPSchedule', 'SCHEDULES', 'SCSSchedule', 'ScheduleError',
    'Segment', 'StaticSchedule', 'build_schedule', 'next_lambda'
]
