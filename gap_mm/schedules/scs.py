# Copyright (c) gap_mm contributors. All rights reserved.
import math

from gap_mm.registry import SCHEDULES
from .base import BaseSchedule, ScheduleError, check_int


@SCHEDULES.register_module(name=['scs', 'SCSSchedule'])
class SCSSchedule(BaseSchedule):
    """When SCS's gates change: the temperature ``beta`` and the freeze.

    ``beta`` rises geometrically from ``beta_init`` at step ``begin`` to
    ``beta_final`` at step ``freeze``:
    ``beta_t = beta_init * (beta_final / beta_init) ** ((t - begin) /
    (freeze - begin))``, so the gates ``sigmoid(beta * s)`` harden smoothly
    (continuous sparsification); at ``freeze`` the structure is fixed
    (gates ``1[s > 0]``) and the rest of the run trains it. The FLOPs
    weight ``lambda`` is adjusted every ``lambda_interval`` steps before the
    freeze (:func:`next_lambda`). A pure function of ``t``.

    Args:
        freeze (int): Step from which the structure is fixed.
        begin (int): Step at which ``beta`` starts rising. Defaults to 0.
        beta_init (float): Defaults to 1.
        beta_final (float): Defaults to 200.
        lambda_interval (int): Steps between ``lambda`` updates.
            Defaults to 10.
        by_epoch (bool): Count epochs instead of iterations.

    Examples:
        >>> s = SCSSchedule(freeze=4, beta_final=16)
        >>> [s.beta(t) for t in range(6)]
        [1.0, 2.0, 4.0, 8.0, 16.0, 16.0]
    """

    what = 'SCS schedule'

    def __init__(self,
                 freeze: int,
                 begin: int = 0,
                 beta_init: float = 1.0,
                 beta_final: float = 200.0,
                 lambda_interval: int = 10,
                 by_epoch: bool = False) -> None:
        super().__init__(by_epoch)
        self.begin = check_int(begin, 'begin', 0)
        self.freeze = check_int(freeze, 'freeze', 1)
        self.lambda_interval = check_int(lambda_interval, 'lambda_interval', 1)
        if self.freeze <= self.begin:
            raise ScheduleError(
                f'SCS needs begin < freeze, but got begin={begin}, '
                f'freeze={freeze}')
        for name, value in (('beta_init', beta_init), ('beta_final',
                                                       beta_final)):
            if isinstance(
                    value,
                    bool) or not isinstance(value,
                                            (int, float)) or not value > 0:
                raise ScheduleError(
                    f'{name} must be a number > 0, but got {value!r}')
        if beta_final < beta_init:
            raise ScheduleError(
                f'beta_final ({beta_final}) must be >= beta_init '
                f'({beta_init}): the gates harden as beta rises')
        self.beta_init, self.beta_final = float(beta_init), float(beta_final)

    def beta(self, t: int) -> float:
        """The temperature at step ``t``."""
        if t <= self.begin:
            return self.beta_init
        if t >= self.freeze:
            return self.beta_final
        frac = (t - self.begin) / (self.freeze - self.begin)
        return self.beta_init * math.exp(
            frac * math.log(self.beta_final / self.beta_init))

    def is_frozen(self, t: int) -> bool:
        """Whether the structure is fixed at step ``t``."""
        return t >= self.freeze

    def is_lambda_step(self, t: int) -> bool:
        """Whether ``lambda`` is adjusted after step ``t``."""
        return self.begin <= t < self.freeze and (
            t - self.begin) % self.lambda_interval == 0

    def required_length(self) -> int:
        return self.freeze + 1

    def describe_length(self) -> str:
        return f'freeze {self.freeze} + 1'

    def __repr__(self) -> str:
        return (f'SCSSchedule(begin={self.begin}, freeze={self.freeze}, '
                f'beta {self.beta_init:g} -> {self.beta_final:g}, lambda '
                f'every {self.lambda_interval})')


#: How :func:`next_lambda` moves ``lambda``.
LAMBDA_CONTROLLERS = ('multiplicative', 'signed')


def next_lambda(lam: float,
                flops_ratio: float,
                target: float,
                rate: float,
                controller: str = 'multiplicative') -> float:
    """One step of the FLOPs-target controller: ``lambda`` grows while the
    hard structure computes more than ``target`` of the full FLOPs and
    shrinks while it computes less.

    * ``'multiplicative'``: ``lambda * exp(rate * (ratio - target) /
      target)``. ``lambda`` stays > 0, so the FLOPs term can only prune:
      below the target it relaxes towards 0 and leaves the gates to the
      task's gradient (pruning mode).
    * ``'signed'``: ``lambda + rate * (ratio - target) / target``, an
      integral controller whose ``lambda`` turns negative below the target:
      the FLOPs term then rewards FLOPs and grows gates back (growing mode,
      from a seed network); ``rate`` is an absolute step here.

    Args:
        lam (float): The current weight (> 0 for ``'multiplicative'``).
        flops_ratio (float): FLOPs of the hard structure over the full.
        target (float): The user's target in (0, 1].
        rate (float): Step size, > 0.
        controller (str): One of :data:`LAMBDA_CONTROLLERS`.
    """
    error = (flops_ratio - target) / target
    if controller == 'signed':
        return float(lam + rate * error)
    if controller == 'multiplicative':
        return float(lam * math.exp(rate * error))
    raise ValueError(f'controller must be one of {LAMBDA_CONTROLLERS}, got '
                     f'{controller!r}')
