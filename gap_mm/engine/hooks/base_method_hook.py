# Copyright (c) gap_mm contributors. All rights reserved.
"""What every training-method hook of gap_mm does, masks or not."""
import json
import logging
import os.path as osp
from typing import Any, Dict, Mapping, Optional, Union

from mmengine import dist
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from gap_mm.checkpoint.recovery import restores_method_state
from gap_mm.errors import GaPConfigError
from gap_mm.registry import SCHEDULES, build_registered
from gap_mm.schedules import BaseSchedule, ScheduleError

#: The event record a hook appends to, in the run's work dir.
EVENTS_FILE = 'sparsity_events.jsonl'
#: Keys every event record has; an event's own fields may not reuse them.
EVENT_KEYS = ('iter', 'hook', 'event')


class BaseMethodHook(Hook):
    """The method-neutral part of gap_mm's training-method hooks.

    It gives every method, once: the model without its DDP wrapper
    (:meth:`unwrap_model`), whether the run trains (:meth:`trains`), the
    check that the optimizer wrapper can do what the method needs
    (:meth:`check_optim_wrapper`), the run's seed, the same on every rank
    (:attr:`run_seed`, broadcast from rank 0 in ``before_train``), the
    schedule built from :data:`gap_mm.registry.SCHEDULES` with the options
    given as fractions of the run converted into steps
    (:meth:`configure_schedule`, :meth:`build_schedule`), the hook's state
    in the checkpoint (:meth:`checkpoint_state`,
    :meth:`read_checkpoint_state`), and the structured event record
    (:meth:`record_event`).

    :class:`BaseSparsityHook` adds the masks; a method without masks
    (:class:`SCSHook`) subclasses this one directly.

    Priority ``ABOVE_NORMAL``: a method's changes happen before EMAHook
    (``NORMAL``) averages the weights and before LoggerHook and
    CheckpointHook (``BELOW_NORMAL``, ``VERY_LOW``) read them.
    """

    priority = 'ABOVE_NORMAL'
    #: Prefix of the log lines.
    method_name = 'sparsity'
    #: Schedule options that may be given as a fraction of the run (a
    #: float), each with the fewest steps it converts to.
    run_fractions: Mapping[str, int] = {}
    #: The checkpoint key of the hook's state (None: the hook has none).
    state_key: Optional[str] = None

    def __init__(self) -> None:
        self.schedule_cfg: Optional[Dict[str, Any]] = None
        self.schedule: Optional[BaseSchedule] = None
        self.run_seed: Optional[int] = None
        self._run_length: Dict[str, Optional[int]] = {}
        self._loaded_state: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------ the runner
    @staticmethod
    def unwrap_model(runner):
        """``runner.model`` without its model wrapper (DDP)."""
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    @staticmethod
    def trains(runner) -> bool:
        """Whether this run trains.

        ``Runner.train()`` builds the train loop before ``before_run``;
        ``Runner.test()`` and ``val()`` leave it a config dict (or None),
        and reading ``runner.max_iters`` there would build it, dataloader
        and sampler included (a rank-group sampler refuses one process).
        """
        loop = getattr(runner, '_train_loop', 'built')
        return not (loop is None or isinstance(loop, dict))

    def check_optim_wrapper(self, runner, needs: str, what: str,
                            otherwise: str = ''):
        """The optimizer wrapper, if it has the method ``needs``; else a
        :class:`GaPConfigError` that says to use ``GaPOptimWrapper``.

        Args:
            runner: The Runner.
            needs (str): The wrapper method the hook calls.
            what (str): The start of the message: who needs it and why.
            otherwise (str): The end of the message: another way out.
        """
        wrapper = runner.optim_wrapper
        if not hasattr(wrapper, needs):
            raise GaPConfigError(
                f"{what} optim_wrapper=dict(type='GaPOptimWrapper', ...) "
                f'(GaPAmpOptimWrapper for AMP), but got '
                f'{type(wrapper).__name__}{otherwise}')
        return wrapper

    def broadcast_seed(self, runner) -> int:
        """Set :attr:`run_seed` to rank 0's ``runner.seed``, on every rank
        (a collective: every rank calls it, in ``before_train``)."""
        seed = [runner.seed]
        dist.broadcast_object_list(seed)
        self.run_seed = int(seed[0])
        return self.run_seed

    def before_train(self, runner) -> None:
        self.broadcast_seed(runner)

    # -------------------------------------------------------- schedule
    def configure_schedule(self, cfg: Mapping[str, Any]) -> None:
        """Keep the schedule's config, ``dict(type=<a type in SCHEDULES>,
        ...)``, and build it at once when none of its :attr:`run_fractions`
        is a fraction of the run, so that a bad value fails before the
        model is built."""
        self.schedule_cfg = dict(cfg)
        if not any(
                isinstance(cfg.get(key), float) for key in self.run_fractions):
            self._build(self.schedule_cfg)

    def steps_of(self, value: Union[int, float], by_epoch: bool, option: str,
                 minimum: int = 1) -> int:
        """A schedule option given as steps (an int) or as a fraction of the
        run (a float in ``(0, 1]``, or ``[0, 1]`` where ``minimum`` is 0;
        e.g. ``end=0.75``), in steps: ``max(minimum, round(value *
        length))``, and at most ``length - 1``, the last step that a trained
        step still follows (so ``end=1.0`` is the end of the run)."""
        if isinstance(value, float):
            length = self._run_length.get('epochs' if by_epoch else 'iters')
            low_ok = minimum == 0
            if not (0 <= value <= 1 if low_ok else 0 < value <= 1):
                raise GaPConfigError(
                    f'{type(self).__name__} {option}={value}: a float is a '
                    f'fraction of the run and must be in '
                    f'{"[" if low_ok else "("}0, 1]; give an int for a '
                    f'number of steps')
            if not length:
                raise GaPConfigError(
                    f'{type(self).__name__} {option}={value} is a fraction '
                    f'of the run, whose length is unknown here; give an int')
            return max(minimum, min(int(round(value * length)), length - 1))
        return value

    def set_run_length(self, runner) -> None:
        """Remember the run's length, which :meth:`steps_of` converts
        fractions of the run with."""
        self._run_length = dict(
            iters=getattr(runner, 'max_iters', None),
            epochs=getattr(runner, 'max_epochs', None))

    def schedule_in_steps(self) -> Dict[str, Any]:
        """:attr:`schedule_cfg` with every :attr:`run_fractions` option in
        steps."""
        cfg = dict(self.schedule_cfg)
        by_epoch = bool(cfg.get('by_epoch', False))
        for key, minimum in self.run_fractions.items():
            if key in cfg:
                cfg[key] = self.steps_of(cfg[key], by_epoch, key, minimum)
        return cfg

    def _build(self, cfg: Mapping[str, Any], **default_args) -> BaseSchedule:
        return build_registered(
            SCHEDULES,
            cfg,
            'schedule',
            ScheduleError,
            default_args=default_args or None,
            base=BaseSchedule)

    def build_schedule(self, **default_args) -> BaseSchedule:
        """The schedule of this run, from :data:`SCHEDULES` (call
        :meth:`set_run_length` first)."""
        return self._build(self.schedule_in_steps(), **default_args)

    # ----------------------------------------------------- checkpoints
    def checkpoint_state(self, runner) -> Optional[Dict[str, Any]]:
        """The hook's state for ``checkpoint[state_key]``, or None to write
        nothing."""
        return None

    def read_checkpoint_state(self, runner,
                              checkpoint: Mapping) -> Optional[Dict]:
        """The hook's state in a loaded checkpoint, or None (with a
        warning) when it has none."""
        state = checkpoint.get(self.state_key)
        if state is None:
            print_log(
                f'{type(self).__name__}: the loaded checkpoint has no '
                f'{self.state_key!r}; the hook starts afresh',
                logger='current',
                level=logging.WARNING)
        return state

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = self.checkpoint_state(runner)
        if state is not None and self.state_key:
            checkpoint[self.state_key] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the method state of a resumed checkpoint for
        ``before_train``. A checkpoint given as ``load_from`` (no resume)
        only provides weights: the method starts afresh, and the log says
        so when the checkpoint holds a method state."""
        if not self.state_key:
            return
        if not restores_method_state(runner):
            if self.state_key in checkpoint:
                print_log(
                    f'{type(self).__name__}: load_from loads the weights '
                    f'only; the saved {self.state_key!r} (masks, schedule '
                    f'position) is not restored and the method starts '
                    f'afresh; use --resume to continue that run',
                    logger='current')
            return
        state = self.read_checkpoint_state(runner, checkpoint)
        if state is not None:
            self._loaded_state = state

    # ---------------------------------------------------------- events
    def record_event(self, runner, iteration: int, event: str,
                     **fields) -> None:
        """Append ``{"iter": iteration, "hook": <class name>, "event":
        event, **fields}`` as one JSON line to
        ``<work_dir>/sparsity_events.jsonl``, on rank 0 only.

        Args:
            runner: The Runner (its ``work_dir``).
            iteration (int): The iteration the event's log line names: the
                first iteration that trains with the change.
            event (str): The kind of event, e.g. ``'gap'``, ``'prune'``.
            **fields: Plain JSON values (no ``iter``, ``hook``,
                ``event``).
        """
        clash = sorted(set(fields) & set(EVENT_KEYS))
        if clash:
            raise ValueError(f'event fields may not be named {clash}')
        work_dir = getattr(runner, 'work_dir', None)
        if dist.get_rank() != 0 or not work_dir:
            return
        record = dict(iter=int(iteration), hook=type(self).__name__,
                      event=event)
        record.update(fields)
        with open(osp.join(work_dir, EVENTS_FILE), 'a') as f:
            f.write(json.dumps(record) + '\n')
            f.flush()
