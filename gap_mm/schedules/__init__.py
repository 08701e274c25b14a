# Copyright (c) gap_mm contributors. All rights reserved.
"""When things happen: pure functions of the iteration or epoch."""
from .base import BaseGaPSchedule, ScheduleError, Segment
from .builder import SCHEDULES, build_schedule
from .cyclic import CyclicGaPSchedule
from .static import StaticSchedule

__all__ = [
    'BaseGaPSchedule', 'CyclicGaPSchedule', 'SCHEDULES', 'ScheduleError',
    'Segment', 'StaticSchedule', 'build_schedule'
]
