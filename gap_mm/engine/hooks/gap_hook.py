# Copyright (c) gap_mm contributors. All rights reserved.
from typing import Mapping, Optional, Sequence, Union

from mmengine.registry import HOOKS

from gap_mm.errors import GaPConfigError
from gap_mm.schedules import (BaseGaPSchedule, ParallelGaPSchedule,
                              build_schedule)
from ..dist_check import verify_masks_across_ranks
from ..parallel_gap import ParallelGaP
from .base_sparsity_hook import BaseSparsityHook


@HOOKS.register_module()
class GaPHook(BaseSparsityHook):
    """Scheduled grow-and-prune (GaP) sparse training.

    At the start of training every prunable layer is pruned to its target
    sparsity by the magnitude of its initial weights (``init``). The
    schedule then grows one partition at a time back to dense (its regrown
    weights start at exactly 0, with zero momentum), trains it and prunes it
    back by magnitude, round after round, and finally fine-tunes with all
    masks fixed (Ma et al., "Effective Model Sparsification by Scheduled
    Grow-and-Prune Methods", ICLR 2022). With ``schedule=dict(type=
    'static')`` the initial masks never change: the sparse-from-scratch
    baseline (``init='random'`` for a random static mask).

    The hook decides *when*; a :class:`~gap_mm.sparsity.Sparsifier` holds
    the masks and decides *what*; the optimizer wrapper (``GaPOptimWrapper``
    or ``GaPAmpOptimWrapper``, required) masks gradients and weights around
    every step. Everything that is not GaP-specific (initial masks,
    optimizer state at events, EMA, rank checks, checkpoint state) is in
    :class:`BaseSparsityHook`.

    The masks, packed to 1 bit per weight, and the schedule position go in
    the checkpoint under ``'gap_state'`` (:mod:`gap_mm.checkpoint.state`);
    the weights in ``state_dict`` are zero wherever masked, so plain mmdet /
    mmdet3d load it as a dense model with zeros.

    Args:
        schedule (dict): The schedule, e.g. ``dict(type='cyclic',
            period=500, num_rounds=2, finetune=None, by_epoch=False)`` or
            ``dict(type='static')``, from :data:`gap_mm.registry.SCHEDULES`.
        partitions (int | list): K contiguous parameter-balanced partitions,
            or a list of regex groups over parameter names, each prunable
            layer in exactly one. Defaults to 4.
        **kwargs: The options of :class:`BaseSparsityHook`: ``sparsity``,
            ``distribution``, ``pattern`` (None reads the config's
            ``gap_sparsity`` / ``gap_distribution`` / ``gap_pattern``),
            ``module_types``, ``include``, ``exclude``,
            ``prune_output_layers``, ``overrides``,
            ``erk_scale``, ``sparsifier``, ``init``,
            ``regrown_second_moment``, ``verify_sync``, ``print_table``.

    Examples:
        >>> custom_imports = dict(imports=['gap_mm'],
        >>>                       allow_failed_imports=False)
        >>> gap_sparsity = 0.8  # --cfg-options gap_sparsity=0.9
        >>> optim_wrapper = dict(type='GaPOptimWrapper',
        >>>                      optimizer=dict(type='SGD', lr=0.02,
        >>>                                     momentum=0.9))
        >>> custom_hooks = [
        >>>     dict(type='GaPHook', partitions=4,
        >>>          exclude=[r'^backbone\\.conv1\\.'],
        >>>          schedule=dict(type='cyclic', period=2, num_rounds=2,
        >>>                        by_epoch=True))
        >>> ]
    """

    method_name = 'GaP'

    def __init__(self,
                 schedule: Optional[Mapping] = None,
                 partitions: Union[int, Sequence] = 4,
                 **kwargs) -> None:
        if schedule is None:
            raise GaPConfigError(
                "GaPHook needs a schedule, e.g. schedule=dict("
                "type='cyclic', period=..., num_rounds=...) or "
                "dict(type='static')")
        super().__init__(partitions=partitions, **kwargs)
        self.schedule_cfg = schedule
        self.schedule: Optional[BaseGaPSchedule] = None
        self.group = 0  # the rank group whose schedule this rank follows
        self.parallel: Optional[ParallelGaP] = None
        self._combined_at: Optional[int] = None

    def build_schedule(self) -> BaseGaPSchedule:
        # from SCHEDULES, with the sparsifier's partition count (no option
        # of a GaP schedule is a fraction of the run)
        return build_schedule(self.schedule_cfg,
                              self.sparsifier.num_partitions)

    @property
    def update_on_resume(self) -> bool:
        # the update is a reconcile, and with rank groups each rank must
        # regrow its own group's partition from the saved (rank 0's) state
        return True

    def before_train(self, runner) -> None:
        if isinstance(self.schedule, ParallelGaPSchedule):
            self.parallel = ParallelGaP(runner, self)
            self.group = self.parallel.group
        super().before_train(runner)

    def sync_group(self, step: int):
        return None if self.parallel is None else \
            self.parallel.sync_group(step)

    def method_state(self):
        return {} if self.parallel is None else dict(
            combined_at=self._combined_at)

    def load_method_state(self, state) -> None:
        self._combined_at = state.get('combined_at')

    def update(self, runner, step: int) -> None:
        """Make exactly the partitions the schedule names for ``step``
        dense: prune the others that are dense, grow those that are not.
        With a parallel schedule, first combine the rank groups' models at
        the end of a round."""
        if self.parallel is not None:
            self.parallel.set_step(step)
            if self.schedule.is_combine(step) and self._combined_at != step:
                self._combine(runner, step)
        target = self.schedule.dense_partitions(step, self.group)
        current = self.sparsifier.dense_partitions
        prune, grow = sorted(current - target), sorted(target - current)
        if not prune and not grow:
            return
        pruned = self.sparsifier.prune(prune) if prune else {}
        grown = self.sparsifier.grow(grow) if grow else {}
        self.apply_event(
            runner,
            step,
            pruned=pruned,
            grown=grown,
            what=f'prune partitions {prune}, grow partitions {grow}',
            event='gap',
            prune=prune,
            grow=grow)

    def _combine(self, runner, step: int) -> None:
        """Prune this group's dense partition back by magnitude, combine
        the groups' models (see :class:`ParallelGaP`; the pruned partitions
        travel sparse), check that the ranks agree."""
        own = self.sparsifier.prune(sorted(self.sparsifier.dense_partitions))
        self.sparsifier.zero_optimizer_state_(runner.optim_wrapper.optimizer,
                                              own)
        moved = self.parallel.combine()
        where = f'at {self._unit()} {step}'
        self.parallel.verify_identical(where)
        verify_masks_across_ranks(self.sparsifier,
                                  f'after the combine {where}')
        self._combined_at = step
        self.apply_event(
            runner,
            step,
            what=f'pruned partition {self.group} back and combined the '
            f'{self.schedule.num_partitions} rank groups '
            f'({moved["broadcast"] / 2**20:.1f} MiB broadcast, '
            f'{moved["allreduce"] / 2**20:.1f} MiB averaged)',
            event='combine',
            group=self.group)
