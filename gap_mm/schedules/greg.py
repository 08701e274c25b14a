# Copyright (c) gap_mm contributors. All rights reserved.
import math
from typing import Optional

from gap_mm.registry import SCHEDULES
from .base import BaseSchedule, ScheduleError, check_int

#: GReg-1 picks the pruned set at the start, GReg-2 after a pick phase.
VARIANTS = (1, 2)


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(
            value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ScheduleError(
            f'{name} must be a finite number > 0, but got {value!r}')
    return float(value)


def num_updates(start: float, granularity: float, limit: float) -> int:
    """Updates of ``+granularity`` that take a penalty from ``start`` to
    ``limit`` or above: the smallest ``n`` with ``start + n * granularity >=
    limit`` (with a relative tolerance of 1e-9, so ``1.0 / 1e-4`` is 10000
    updates, not 10001)."""
    return max(1, math.ceil((limit - start) / granularity - 1e-9))


@SCHEDULES.register_module(name=['greg', 'GRegSchedule'])
class GRegSchedule(BaseSchedule):
    """When GReg (Wang et al., "Neural Pruning via Growing Regularization",
    ICLR 2021) updates its penalty, picks the pruned set and prunes: a pure
    function of the iteration ``t``.

    The penalty is updated at every step ``t >= begin`` with
    ``(t - begin) % update_interval == 0``; the ``u``-th update (1-based)
    happens at ``begin + (u - 1) * update_interval``, before that step's
    forward, so step ``t`` trains with the penalty of the last update at or
    before it. The phases:

    * GReg-1: the pruned set is picked at ``begin``; update ``u`` sets the
      penalty of the pruned set to ``u * granularity``, for
      ``u = 1 .. num_grow`` where ``num_grow`` is the first count reaching
      ``upper_limit``. Kept weights have no penalty.
    * GReg-2: updates ``u = 1 .. num_pick`` set the penalty of *all*
      weights to ``u * granularity_pick``, until ``upper_limit_pick``; the
      set is picked at update ``num_pick``, by the magnitudes of that step.
      The next ``num_grow`` updates set the pruned set's penalty to
      ``upper_limit_pick' + k * granularity`` (``upper_limit_pick'`` the
      pick phase's last value) and the kept weights' to
      ``granularity_recover``.
    * Stabilize: the penalty stays at its last value for ``stabilize``
      steps after the last growth update's step; then the pruned set is
      masked (:meth:`prune_step`) and the rest of the run is a fine-tune
      with fixed masks.

    The magnitude-ratio rule of the hook may stop a layer's growth early;
    the schedule then gives the values of the updates it did make, and the
    prune comes ``stabilize`` steps after the last layer stopped
    (:meth:`prune_step_after`), never later than without the rule.

    Args:
        variant (int): 1 (GReg-1) or 2 (GReg-2). Defaults to 1.
        update_interval (int): Steps between penalty updates. Defaults
            to 5.
        granularity (float): Growth of the pruned set's penalty per update.
            Defaults to 1e-4.
        upper_limit (float): The penalty at which growth stops. Defaults
            to 1.0.
        stabilize (int): Steps at the final penalty before the prune.
            Defaults to 1000.
        granularity_pick (float): GReg-2's growth of every weight's penalty
            per update in the pick phase. Defaults to 1e-5.
        upper_limit_pick (float): GReg-2's penalty at which the set is
            picked. Defaults to 1e-2.
        granularity_recover (float): GReg-2's penalty on the kept weights
            after the pick (<= 0). Defaults to -1e-4.
        begin (int): First update. Defaults to 0.

    Examples:
        >>> s = GRegSchedule(update_interval=2, granularity=0.25,
        ...                  upper_limit=1.0, stabilize=3)
        >>> s.num_grow, s.last_growth_step(), s.prune_step()
        (4, 6, 9)
        >>> [s.update_index(t) for t in range(5)]
        [1, None, 2, None, 3]
    """

    what = 'GReg schedule'

    def __init__(self,
                 variant: int = 1,
                 update_interval: int = 5,
                 granularity: float = 1e-4,
                 upper_limit: float = 1.0,
                 stabilize: int = 1000,
                 granularity_pick: float = 1e-5,
                 upper_limit_pick: float = 1e-2,
                 granularity_recover: float = -1e-4,
                 begin: int = 0) -> None:
        super().__init__(by_epoch=False)
        if variant not in VARIANTS or isinstance(variant, bool):
            raise ScheduleError(f'variant must be one of {VARIANTS} (GReg-1 '
                                f'or GReg-2), but got {variant!r}')
        self.variant = variant
        self.update_interval = check_int(update_interval, 'update_interval', 1)
        self.stabilize = check_int(stabilize, 'stabilize', 0)
        self.begin = check_int(begin, 'begin', 0)
        self.granularity = _check_positive(granularity, 'granularity')
        self.upper_limit = _check_positive(upper_limit, 'upper_limit')
        if self.upper_limit < self.granularity:
            raise ScheduleError(
                f'upper_limit={upper_limit} is below granularity='
                f'{granularity}: the first update would pass it; give an '
                f'upper_limit >= granularity')
        self.granularity_pick = _check_positive(granularity_pick,
                                                'granularity_pick')
        self.upper_limit_pick = _check_positive(upper_limit_pick,
                                                'upper_limit_pick')
        if isinstance(granularity_recover, bool) or not isinstance(
                granularity_recover, (int, float)) or not math.isfinite(
                    granularity_recover) or granularity_recover > 0:
            raise ScheduleError(
                f'granularity_recover must be a finite number <= 0 (a small '
                f'negative penalty on the kept weights), but got '
                f'{granularity_recover!r}')
        self.granularity_recover = float(granularity_recover)
        if variant == 2:
            if self.upper_limit_pick < self.granularity_pick:
                raise ScheduleError(
                    f'upper_limit_pick={upper_limit_pick} is below '
                    f'granularity_pick={granularity_pick}; give an '
                    f'upper_limit_pick >= granularity_pick')
            if self.upper_limit_pick >= self.upper_limit:
                raise ScheduleError(
                    f'upper_limit_pick={upper_limit_pick} must be below '
                    f'upper_limit={upper_limit}: the pruned set is picked '
                    f'at upper_limit_pick and its penalty then grows to '
                    f'upper_limit')
        #: Updates of the pick phase (0 for GReg-1).
        self.num_pick = num_updates(0.0, self.granularity_pick,
                                    self.upper_limit_pick) \
            if variant == 2 else 0
        #: Growth updates of the pruned set, without early stops.
        self.num_grow = num_updates(self.reg_at_pick(), self.granularity,
                                    self.upper_limit)

    # ------------------------------------------------------------ steps
    def update_index(self, t: int) -> Optional[int]:
        """The 1-based number of the penalty update made at step ``t``, or
        None when ``t`` is not an update step."""
        if t < self.begin or (t - self.begin) % self.update_interval:
            return None
        return (t - self.begin) // self.update_interval + 1

    def update_step(self, u: int) -> int:
        """The step of the ``u``-th update."""
        return self.begin + (u - 1) * self.update_interval

    def pick_step(self) -> int:
        """The step whose weights the pruned set is picked by (GReg-1:
        ``begin``; GReg-2: the last update of the pick phase)."""
        return self.begin if self.variant == 1 else self.update_step(
            self.num_pick)

    def growth_index(self, u: int) -> int:
        """The growth count ``k`` of update ``u``: 1 for the first update
        that grows the pruned set (GReg-1's first, GReg-2's first after the
        pick), <= 0 in GReg-2's pick phase."""
        return u - self.num_pick

    def last_growth_step(self) -> int:
        """The step of the last growth update, without early stops."""
        return self.update_step(self.num_pick + self.num_grow)

    def prune_step_after(self, last_step: int) -> int:
        """The prune step when the last layer stopped growing at
        ``last_step``."""
        return last_step + self.stabilize

    def prune_step(self) -> int:
        """The prune step without early stops: the masks apply from it."""
        return self.prune_step_after(self.last_growth_step())

    # ----------------------------------------------------------- values
    def reg_pick(self, u: int) -> float:
        """GReg-2's penalty on every weight after pick-phase update
        ``u``."""
        return min(u, self.num_pick) * self.granularity_pick

    def reg_at_pick(self) -> float:
        """The pruned set's penalty when it is picked (0 for GReg-1)."""
        return self.reg_pick(self.num_pick) if self.variant == 2 else 0.0

    def reg_pruned(self, k: int) -> float:
        """The pruned set's penalty after growth update ``k`` (clamped to
        ``0 .. num_grow``)."""
        k = min(max(k, 0), self.num_grow)
        return self.reg_at_pick() + k * self.granularity

    def reg_kept(self, k: int) -> float:
        """The kept weights' penalty after growth update ``k >= 1``."""
        return self.granularity_recover if self.variant == 2 else 0.0

    def required_length(self) -> int:
        # the prune must be followed by at least one trained step
        return self.prune_step() + 1

    def describe_length(self) -> str:
        return (f'the prune at step {self.prune_step()} (last growth update '
                f'at {self.last_growth_step()} + stabilize {self.stabilize})'
                f' + 1')

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(variant={self.variant}, '
                f'update_interval={self.update_interval}, granularity='
                f'{self.granularity}, upper_limit={self.upper_limit}, '
                f'stabilize={self.stabilize}, granularity_pick='
                f'{self.granularity_pick}, upper_limit_pick='
                f'{self.upper_limit_pick}, granularity_recover='
                f'{self.granularity_recover}, begin={self.begin}; prune at '
                f'{self.prune_step()})')
