# Copyright (c) gap_mm contributors. All rights reserved.
from typing import Dict, Mapping, Optional, Sequence, Union

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn

from gap_mm.errors import GaPConfigError
from gap_mm.schedules import BaseGaPSchedule, build_schedule
from gap_mm.sparsity import (DISTRIBUTIONS, REGROWN_SECOND_MOMENTS,
                             MagnitudeSparsifier, check_sparsity,
                             format_layer_table, parse_pattern,
                             select_prunable)
from ..dist_check import verify_masks_across_ranks

DATA_BATCH = Optional[Union[dict, tuple, list]]
#: Checkpoint key under which the hook keeps its state.
CKPT_KEY = 'gap_state'
_STATE_VERSION = 1


def _resolve_types(module_types):
    if module_types is None:
        return None
    resolved = []
    for item in module_types:
        if isinstance(item, str):
            cls = getattr(nn, item, None)
            if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
                raise GaPConfigError(
                    f'module_types entry {item!r} is not a torch.nn layer '
                    f"type; use names such as 'Conv2d' or 'Linear'")
            resolved.append(cls)
        elif isinstance(item, type) and issubclass(item, nn.Module):
            resolved.append(item)
        else:
            raise GaPConfigError(f'module_types entries must be nn.Module '
                                 f'classes or their names, got {item!r}')
    return tuple(resolved)


@HOOKS.register_module()
class GaPHook(Hook):
    """Scheduled grow-and-prune (GaP) sparse training.

    At the start of training every prunable layer is pruned to its target
    sparsity by the magnitude of its initial weights. The schedule then
    grows one partition at a time back to dense (its regrown weights start
    at exactly 0, with zero momentum), trains it and prunes it back,
    round after round, and finally fine-tunes with all masks fixed
    (Ma et al., "Effective Model Sparsification by Scheduled Grow-and-Prune
    Methods", ICLR 2022).

    The hook decides *when*; a :class:`~gap_mm.sparsity.MagnitudeSparsifier`
    holds the masks and decides *what*; the optimizer wrapper
    (``GaPOptimWrapper`` or ``GaPAmpOptimWrapper``, required) masks
    gradients and weights around every step.

    Events for step ``t + 1`` are applied at the end of step ``t``
    (``after_train_iter``, or ``after_train_epoch`` for an epoch schedule),
    before CheckpointHook saves, so a checkpoint always holds the masks of
    the step it resumes at and its weights are zero wherever masked: plain
    mmdet / mmdet3d load it as a dense model with zeros. The masks, packed
    to 1 bit per weight, and the schedule position go in the checkpoint
    under ``'gap_state'``.

    Priority ``ABOVE_NORMAL``: masks change before EMAHook (``NORMAL``)
    averages weights and before LoggerHook (``BELOW_NORMAL``) and
    CheckpointHook (``VERY_LOW``) read them.

    Args:
        sparsity (float): Target sparsity in ``[0, 1)``. Defaults to 0.8.
        distribution (str): ``'uniform'``, ``'global'`` (one magnitude
            threshold, the paper's non-uniform) or ``'erk'``.
            Defaults to ``'uniform'``.
        pattern (str): ``'unstructured'`` or ``'N:M'`` such as ``'2:4'``.
            Defaults to ``'unstructured'``.
        partitions (int | list): K contiguous parameter-balanced partitions,
            or a list of regex groups over parameter names, each prunable
            layer in exactly one. Defaults to 4.
        schedule (dict): The schedule, e.g. ``dict(type='cyclic',
            period=500, num_rounds=2, finetune=None, by_epoch=False)`` or
            ``dict(type='static')``. See :mod:`gap_mm.schedules`.
        module_types (list[str], optional): Layer types whose weight is
            prunable. Defaults to Conv1d/2d/3d and Linear.
        include (list[str], optional): Regexes; prune only matching names.
        exclude (list[str], optional): Regexes of names that stay dense,
            such as the stem conv and the final classifier.
        overrides (dict, optional): Regex → sparsity per layer.
        erk_scale (float): Power on the ERK score. Defaults to 1.0.
        regrown_second_moment (str): Adam-style second moments
            (``exp_avg_sq``) of regrown weights start at ``'mean'``, the
            mean over the tensor's other positions, or at ``'zero'``.
            Momentum and first moments always start at 0. With ``'zero'``
            Adam's per-tensor bias correction makes the first updates of
            regrown weights 3x to 6x too large (see
            :meth:`~gap_mm.sparsity.MagnitudeSparsifier.init_regrown_state_`).
            No effect on SGD. Defaults to ``'mean'``.
        verify_sync (bool): In distributed training, check after every event
            that all ranks hold identical masks. Defaults to True.
        print_table (bool): Log the per-layer table at the start and the
            end of training. Defaults to True.

    Examples:
        >>> custom_imports = dict(imports=['gap_mm'],
        >>>                       allow_failed_imports=False)
        >>> optim_wrapper = dict(type='GaPOptimWrapper',
        >>>                      optimizer=dict(type='SGD', lr=0.02,
        >>>                                     momentum=0.9))
        >>> custom_hooks = [
        >>>     dict(type='GaPHook', sparsity=0.8, partitions=4,
        >>>          exclude=[r'^backbone\\.conv1\\.'],
        >>>          schedule=dict(type='cyclic', period=2, num_rounds=2,
        >>>                        by_epoch=True))
        >>> ]
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 sparsity: float = 0.8,
                 distribution: str = 'uniform',
                 pattern: str = 'unstructured',
                 partitions: Union[int, Sequence] = 4,
                 schedule: Optional[Mapping] = None,
                 module_types: Optional[Sequence[str]] = None,
                 include: Optional[Sequence[str]] = None,
                 exclude: Optional[Sequence[str]] = None,
                 overrides: Optional[Mapping[str, float]] = None,
                 erk_scale: float = 1.0,
                 regrown_second_moment: str = 'mean',
                 verify_sync: bool = True,
                 print_table: bool = True) -> None:
        # Validate everything that does not need the model now, so that a
        # bad config fails before the model is built.
        self.sparsity = check_sparsity(sparsity)
        if distribution not in DISTRIBUTIONS:
            raise GaPConfigError(
                f'distribution must be one of {DISTRIBUTIONS}, '
                f'but got {distribution!r}')
        parse_pattern(pattern)
        bad_int = isinstance(partitions, int) and (
            isinstance(partitions, bool) or partitions < 1)
        if bad_int or not isinstance(partitions, (int, list, tuple)):
            raise GaPConfigError(
                f'partitions must be a positive int or a list '
                f'of regex groups, but got {partitions!r}')
        if schedule is None:
            raise GaPConfigError(
                "GaPHook needs a schedule, e.g. schedule=dict("
                "type='cyclic', period=..., num_rounds=...) or "
                "dict(type='static')")
        self.distribution = distribution
        self.pattern = pattern
        self.partitions = partitions
        self.schedule_cfg = schedule
        self.module_types = _resolve_types(module_types)
        self.include = include
        self.exclude = exclude
        self.overrides = overrides
        self.erk_scale = erk_scale
        if regrown_second_moment not in REGROWN_SECOND_MOMENTS:
            raise GaPConfigError(
                f'regrown_second_moment must be one of '
                f'{REGROWN_SECOND_MOMENTS}, but got '
                f'{regrown_second_moment!r}')
        self.regrown_second_moment = regrown_second_moment
        self.verify_sync = verify_sync
        self.print_table = print_table
        self.sparsifier: Optional[MagnitudeSparsifier] = None
        self.schedule: Optional[BaseGaPSchedule] = None
        self._loaded_state: Optional[dict] = None
        self._stats: Dict[str, float] = {}
        self.group = 0  # rank group; parallel GaP gives groups their own

    # ---------------------------------------------------------- set-up
    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        params = select_prunable(model, self.module_types, self.include,
                                 self.exclude)
        self.sparsifier = MagnitudeSparsifier(
            params,
            sparsity=self.sparsity,
            distribution=self.distribution,
            pattern=self.pattern,
            overrides=self.overrides,
            partitions=self.partitions,
            erk_scale=self.erk_scale)
        self.schedule = build_schedule(self.schedule_cfg,
                                       self.sparsifier.num_partitions)
        print_log(
            f'GaP: {len(params)} prunable layers in '
            f'{self.sparsifier.num_partitions} partitions, schedule '
            f'{self.schedule!r}',
            logger='current')

    def _step(self, runner) -> int:
        return runner.epoch if self.schedule.by_epoch else runner.iter

    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper
        if not hasattr(wrapper, 'attach_sparsifier'):
            raise GaPConfigError(
                f'GaPHook needs an optimizer wrapper that masks gradients '
                f"and weights: set optim_wrapper=dict(type='GaPOptimWrapper'"
                f", ...) (GaPAmpOptimWrapper for AMP), but got "
                f'{type(wrapper).__name__}')
        max_steps = runner.max_epochs if self.schedule.by_epoch \
            else runner.max_iters
        if self.schedule.by_epoch and max_steps is None:
            raise GaPConfigError('an epoch-based GaP schedule (by_epoch=True) '
                                 'needs an epoch-based train loop')
        self.schedule.check_fits(max_steps)
        wrapper.attach_sparsifier(self.sparsifier)
        step = self._step(runner)
        if self._loaded_state is not None:
            self.sparsifier.load_state_dict(self._loaded_state['sparsifier'])
            state = self._loaded_state
            print_log(
                f'GaP: restored the masks of '
                f'{len(state["sparsifier"]["masks"])} sparse layers at '
                f'{self.schedule.unit[:-1]} {state["step"]}',
                logger='current')
        else:
            # Start sparse: every layer at its target, by initial magnitude.
            self._event(
                runner,
                step,
                prune=range(self.sparsifier.num_partitions),
                grow=())
            self._check_no_layer_emptied()
        self._reconcile(runner, step)
        if self.print_table:
            print_log(
                format_layer_table(self.sparsifier.layer_stats(),
                                   'GaP masks at the start of training:'),
                logger='current')

    def _check_no_layer_emptied(self) -> None:
        """A layer left without a single weight at the start cannot learn:
        stop with the layers named instead of training a broken model."""
        emptied = [n for n, k in self.sparsifier.num_keep.items() if k == 0]
        if not emptied:
            return
        why = ''
        if self.distribution == 'global':
            why = (' One magnitude threshold over freshly initialised layers '
                   'compares their initialisation scales (Kaiming, Xavier, '
                   'N(0, 0.01)) rather than their importance.')
        raise GaPConfigError(
            f'GaP at sparsity {self.sparsity} with distribution '
            f'{self.distribution!r} would prune every weight of {emptied}.'
            f'{why} Use distribution=\'erk\' (non-uniform by layer shape, as '
            f'in RigL), exclude these layers, or give them overrides.')

    # ---------------------------------------------------------- events
    def _reconcile(self, runner, step: int) -> None:
        """Bring the masks to the schedule's state for ``step``."""
        target = self.schedule.dense_partitions(step, self.group)
        current = self.sparsifier.dense_partitions
        self._event(
            runner, step, prune=current - target, grow=target - current)

    def _event(self, runner, step: int, prune, grow) -> None:
        prune, grow = sorted(prune), sorted(grow)
        if prune or grow:
            optimizer = runner.optim_wrapper.optimizer
            if prune:
                new = self.sparsifier.prune(prune)
                self.sparsifier.zero_optimizer_state_(optimizer, new)
            if grow:
                regrown = self.sparsifier.grow(grow)
                # Regrown weights are 0 already; momentum restarts at 0,
                # Adam's second moment at the tensor's level.
                self.sparsifier.init_regrown_state_(
                    optimizer, regrown, self.regrown_second_moment)
            where = f'at {self.schedule.unit[:-1]} {step}'
            if self.verify_sync:
                verify_masks_across_ranks(self.sparsifier, where)
            self._stats = self.sparsifier.summarize(
                self.sparsifier.layer_stats(), self.sparsifier.num_partitions)
            print_log(
                f'GaP {where}: prune partitions {prune}, grow partitions '
                f'{grow}; sparsity {100 * self._stats["sparsity"]:.2f}%',
                logger='current')
        elif not self._stats:
            self._stats = self.sparsifier.summarize(
                self.sparsifier.layer_stats(), self.sparsifier.num_partitions)
        self._update_scalars(runner)

    def _update_scalars(self, runner) -> None:
        hub = runner.message_hub
        for key, value in self._stats.items():
            hub.update_scalar(f'train/gap_{key}', value)
        dense = sorted(self.sparsifier.dense_partitions)
        hub.update_scalar('train/gap_dense_partition',
                          dense[0] if len(dense) == 1 else -1)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        if self.schedule.by_epoch:
            self._update_scalars(runner)
        else:
            self._reconcile(runner, runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        if self.schedule.by_epoch:
            self._reconcile(runner, runner.epoch + 1)

    def after_train(self, runner) -> None:
        if self.print_table:
            print_log(
                format_layer_table(self.sparsifier.layer_stats(),
                                   'GaP masks at the end of training:'),
                logger='current')

    # ----------------------------------------------------- checkpoints
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.sparsifier is None:
            return
        step = runner.epoch + 1 if self.schedule.by_epoch else runner.iter + 1
        checkpoint[CKPT_KEY] = dict(
            version=_STATE_VERSION,
            sparsifier=self.sparsifier.state_dict(),
            step=step,
            by_epoch=self.schedule.by_epoch,
            dense_partitions=sorted(self.sparsifier.dense_partitions))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(CKPT_KEY)
        if state is None:
            print_log(
                'GaP: the loaded checkpoint has no GaP state; masks will be '
                'chosen afresh by magnitude from its weights',
                logger='current',
                level=30)
            return
        if state.get('version') != _STATE_VERSION:
            raise GaPConfigError(
                f'unsupported GaP checkpoint state version '
                f'{state.get("version")!r}; this gap_mm reads '
                f'version {_STATE_VERSION}')
        self._loaded_state = state
