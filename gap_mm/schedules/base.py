# Copyright (c) gap_mm contributors. All rights reserved.
"""When partitions are dense: stateless functions of the training step."""
from abc import ABCMeta, abstractmethod
from typing import FrozenSet, List, NamedTuple, Optional

from gap_mm.errors import GaPConfigError


class ScheduleError(GaPConfigError):
    """A GaP schedule that is invalid or does not fit the training run."""


class Segment(NamedTuple):
    """A run of steps ``[start, end)`` with the same dense partitions."""
    start: int
    end: int
    dense: FrozenSet[int]
    phase: str  # 'sparse', 'grow' or 'finetune'
    round: int  # -1 outside the GaP rounds


def check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) \
            or value < minimum:
        raise ScheduleError(
            f'{name} must be an int >= {minimum}, but got {value!r}')
    return value


class BaseSchedule(metaclass=ABCMeta):
    """When a sparse-training method acts, as a pure function of the step
    ``t`` (an iteration or an epoch).

    Subclasses keep no state, so resuming a run needs nothing but the step
    count (timm's schedulers are written the same way). Every schedule says
    how long a run it needs (:meth:`required_length`) and checks a run
    against it (:meth:`check_fits`).

    Args:
        by_epoch (bool): Whether ``t`` counts epochs (else iterations).
    """

    #: How messages name the schedule.
    what = 'schedule'

    def __init__(self, by_epoch: bool = False) -> None:
        if not isinstance(by_epoch, bool):
            raise ScheduleError(f'by_epoch must be a bool, got {by_epoch!r}')
        self.by_epoch = by_epoch

    @property
    def unit(self) -> str:
        return 'epochs' if self.by_epoch else 'iterations'

    @property
    def length_key(self) -> str:
        """The ``train_cfg`` key the schedule is checked against."""
        return 'max_epochs' if self.by_epoch else 'max_iters'

    @abstractmethod
    def required_length(self) -> int:
        """Steps the schedule needs, fine-tune included."""

    def describe_length(self) -> str:
        return str(self.required_length())

    def check_fits(self, max_steps: int) -> None:
        """Raise :class:`ScheduleError` if the run is shorter than the
        schedule."""
        need = self.required_length()
        if need > max_steps:
            raise ScheduleError(
                f'The {self.what} needs {self.describe_length()} = {need} '
                f'{self.unit}, but the training run has only {max_steps} '
                f'{self.unit} (train_cfg {self.length_key}). '
                f'Shorten the schedule or lengthen the run.')


class BaseGaPSchedule(BaseSchedule):
    """Which partitions are dense at step ``t`` (an iteration or an epoch).

    ``group`` is the index of the rank group, for schedules (parallel GaP)
    in which groups differ; a single-group schedule ignores it.

    Args:
        num_partitions (int): K, the number of partitions of the model.
        by_epoch (bool): Whether ``t`` counts epochs (else iterations).
    """

    what = 'GaP schedule'

    def __init__(self, num_partitions: int, by_epoch: bool = False) -> None:
        super().__init__(by_epoch)
        self.num_partitions = check_int(num_partitions, 'num_partitions', 1)

    @abstractmethod
    def dense_partitions(self, t: int, group: int = 0) -> FrozenSet[int]:
        """Partitions that are dense during step ``t`` (0-based)."""

    @abstractmethod
    def phase(self, t: int, group: int = 0) -> str:
        """``'sparse'``, ``'grow'`` or ``'finetune'`` at step ``t``."""

    def round_at(self, t: int) -> int:
        """GaP round at step ``t``; -1 when not in a round."""
        return -1

    def segments(self, max_steps: int, group: int = 0) -> List[Segment]:
        """The timeline ``[0, max_steps)`` cut where the dense set or the
        phase changes."""
        out: List[Segment] = []
        for t in range(max_steps):
            key = (self.dense_partitions(t, group), self.phase(t, group),
                   self.round_at(t))
            if out and (out[-1].dense, out[-1].phase, out[-1].round) == key:
                out[-1] = out[-1]._replace(end=t + 1)
            else:
                out.append(Segment(t, t + 1, *key))
        return out

    def finetune_start(self) -> Optional[int]:
        """First step of the final fine-tune (all masks fixed)."""
        return None
