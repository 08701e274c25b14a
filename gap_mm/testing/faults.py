# Copyright (c) gap_mm contributors. All rights reserved.
"""SIGKILL a training process at a chosen point, deterministically.

For the fault matrix (``tools/analysis_tools/fault_matrix.py``) and the
fault-tolerance tests: name this module in a config's ``custom_imports``
(``imports=['gap_mm', 'gap_mm.testing.faults']``) and set

* ``GAP_MM_FAULT=<point>:<n>``: where the process kills itself;
* ``GAP_MM_FAULT_RANK=<r>``: which rank dies (default 0; the others go on
  until their launcher stops them).

Without ``GAP_MM_FAULT`` importing it changes nothing, so one config runs
with and without the kill. The points (``n`` as the hooks count: an
iteration is ``runner.iter``, 0-based; an event "for step s" is made at the
end of iteration ``s - 1``, before the checkpoint ``iter_s.pth``):

``step:i``
    Mid-iteration: inside the optimizer step of iteration ``i``, after the
    optimizer moved the weights and before ``GaPOptimWrapper`` masks them
    again (SCS's gate logits have taken their SGD step too).
``masks:s``
    During a mask event for step ``s`` (GaP's grow or prune, a P-GaP
    combine's prune-back, GMP's prune, RigL's and SET's drop and grow,
    GReg's prune): the masks have changed, the optimizer state at the
    changed positions is not yet zeroed or reset, nothing is logged.
``penalty:s``
    During GReg's penalty growth for step ``s``: after the first layer's
    penalty grew, before the other layers'.
``lambda:i``
    After SCSHook moved ``lambda`` at the end of iteration ``i`` (its
    gate-lambda update), before the checkpoint of that iteration.
``save:n``
    During the write of ``iter_n.pth``: half of its bytes are in the
    temporary file, then the kill.
``combine:s``
    During the P-GaP combine for step ``s``: after the first exchange
    (partition 0's masks and values broadcast), before the rest.

The process that dies prints ``gap_mm.testing.faults: SIGKILL at
<point>:<n> (rank <r>)`` to stderr first, so a caller can tell the kill it
asked for from another death.
"""
import os
import signal
import sys
from typing import Callable, Dict, Optional, Tuple

#: The environment variables read at import.
FAULT_ENV = 'GAP_MM_FAULT'
FAULT_RANK_ENV = 'GAP_MM_FAULT_RANK'
#: The start of the line printed just before the kill.
MARKER = 'gap_mm.testing.faults: SIGKILL at'


def parse_fault(value: str) -> Tuple[str, int]:
    """``'masks:6'`` -> ``('masks', 6)``.

    Raises:
        ValueError: For an unknown point or a step that is not an int.
    """
    point, sep, n = value.partition(':')
    if point not in POINTS or not sep or not n.lstrip('-').isdigit():
        raise ValueError(f'{FAULT_ENV}={value!r}: expected <point>:<n> with '
                         f'a point of {sorted(POINTS)}')
    return point, int(n)


def _rank() -> int:
    from mmengine.dist import get_rank
    return get_rank()


def _die(point: str, n: int) -> None:
    print(f'{MARKER} {point}:{n} (rank {_rank()})', file=sys.stderr,
          flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _arm_step(n: int, kill: Callable[[], None]) -> None:
    from mmengine.optim import OptimWrapper
    step = OptimWrapper.step

    def step_then_die(self, **kwargs):
        step(self, **kwargs)
        # the wrapper counts the backward passes; 0-based iteration
        if self._inner_count - 1 == n:
            kill()

    OptimWrapper.step = step_then_die


def _arm_masks(n: int, kill: Callable[[], None]) -> None:
    from gap_mm.engine.hooks.base_sparsity_hook import BaseSparsityHook
    apply_event = BaseSparsityHook.apply_event

    def die_in_event(self, runner, step, *args, **kwargs):
        if step == n:
            kill()
        return apply_event(self, runner, step, *args, **kwargs)

    BaseSparsityHook.apply_event = die_in_event


def _arm_penalty(n: int, kill: Callable[[], None]) -> None:
    from gap_mm.engine.hooks.greg_hook import GRegHook
    grow = GRegHook._grow

    def die_in_growth(self, step, k):
        if step != n:
            return grow(self, step, k)
        penalty_set = self.penalty.set_

        def set_then_die(*args, **kwargs):
            penalty_set(*args, **kwargs)
            kill()

        self.penalty.set_ = set_then_die
        try:
            return grow(self, step, k)
        finally:
            del self.penalty.set_

    GRegHook._grow = die_in_growth


def _arm_lambda(n: int, kill: Callable[[], None]) -> None:
    from gap_mm.engine.hooks.scs_hook import SCSHook
    after_train_iter = SCSHook.after_train_iter

    def die_after_lambda(self, runner, *args, **kwargs):
        after_train_iter(self, runner, *args, **kwargs)
        if runner.iter == n:
            kill()

    SCSHook.after_train_iter = die_after_lambda


def _arm_save(n: int, kill: Callable[[], None]) -> None:
    from gap_mm.fileio import atomic_local_backend
    write_and_sync = atomic_local_backend._write_and_sync
    prefix = f'.iter_{n}.pth.tmp-'

    def die_mid_write(f, data, tmp_path):
        if os.path.basename(tmp_path).startswith(prefix):
            f.write(bytes(data)[:len(data) // 2])
            f.flush()
            kill()
        write_and_sync(f, data, tmp_path)

    atomic_local_backend._write_and_sync = die_mid_write


def _arm_combine(n: int, kill: Callable[[], None]) -> None:
    from gap_mm.engine import parallel_gap
    from gap_mm.engine.hooks.gap_hook import GaPHook
    combine, exchange = GaPHook._combine, parallel_gap._exchange
    armed = []

    def combine_armed(self, runner, step):
        if step == n:
            armed.append(step)
        return combine(self, runner, step)

    def exchange_then_die(*args, **kwargs):
        moved = exchange(*args, **kwargs)
        if armed:
            kill()
        return moved

    GaPHook._combine = combine_armed
    parallel_gap._exchange = exchange_then_die


#: Point -> the function that arms it.
POINTS: Dict[str, Callable[[int, Callable[[], None]], None]] = {
    'step': _arm_step,
    'masks': _arm_masks,
    'penalty': _arm_penalty,
    'lambda': _arm_lambda,
    'save': _arm_save,
    'combine': _arm_combine,
}


def arm(value: Optional[str] = None, rank: Optional[int] = None) -> None:
    """Arm the kill ``value`` (``'<point>:<n>'``; None reads
    ``$GAP_MM_FAULT``, and nothing is armed if it is unset) for ``rank``
    (None reads ``$GAP_MM_FAULT_RANK``, default 0)."""
    value = os.environ.get(FAULT_ENV) if value is None else value
    if not value:
        return
    point, n = parse_fault(value)
    if rank is None:
        rank = int(os.environ.get(FAULT_RANK_ENV, 0))

    def kill() -> None:
        if _rank() == rank:
            _die(point, n)

    POINTS[point](n, kill)


arm()
