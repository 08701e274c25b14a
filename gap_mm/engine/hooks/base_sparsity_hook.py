# Copyright (c) gap_mm contributors. All rights reserved.
"""What every mask-based sparse-training hook of gap_mm does, once."""
import logging
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from mmengine.hooks import EMAHook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop

from gap_mm.checkpoint import CKPT_KEY, read_state, write_state
from gap_mm.errors import GaPConfigError
from gap_mm.registry import SPARSIFIERS, build_registered
from gap_mm.sparsity import (DISTRIBUTIONS, REGROWN_SECOND_MOMENTS,
                             PrunableParams, RandomScore, Sparsifier,
                             check_sparsity, format_layer_table,
                             format_partitions, format_selection,
                             parse_pattern, resolve_module_types,
                             select_prunable)
from ..dist_check import verify_masks_across_ranks
from ..gap_variables import resolve_gap_variables
from ..inherited_hooks import replaced_base_hooks
from ..optimizers import StepStage
from .base_method_hook import BaseMethodHook

DATA_BATCH = Optional[Union[dict, tuple, list]]

#: How the masks are chosen at a fresh start (``init``).
INITS = ('magnitude', 'random', 'none')
#: What an unset sparsity, distribution or pattern falls back to when the
#: config has no ``gap_*`` variable for it.
DEFAULTS = dict(sparsity=0.8, distribution='uniform', pattern='unstructured')


class BaseSparsityHook(BaseMethodHook):
    """The shared engine of gap_mm's mask-based sparse-training hooks.

    On top of :class:`BaseMethodHook` (unwrapping, the run check, the
    optimizer-wrapper check, the seed, the schedule from ``SCHEDULES``,
    checkpoint plumbing, the event record) it does, once for every method:
    select the prunable layers, build the
    :class:`~gap_mm.sparsity.Sparsifier` (distributions, N:M, exact counts,
    partitions), attach it to the optimizer wrapper, choose the initial
    masks, zero the optimizer state at every prune and reset it at every
    grow, check after every event that all ranks hold the same masks, keep
    an :class:`~mmengine.hooks.EMAHook`'s averaged model zero wherever the
    masks prune, log the sparsity through the message hub, print the
    per-layer table, record every mask event, and save its state in the
    checkpoint (see :mod:`gap_mm.checkpoint.state`) so that a resumed run
    continues exactly.

    A method subclasses it, gives its schedule's config to
    :meth:`configure_schedule` (or overrides :meth:`build_schedule`) and
    implements :meth:`update` (which masks the step needs, each change
    passed to :meth:`apply_event`); it may override
    :meth:`method_state` / :meth:`load_method_state` and :meth:`step_stage`
    (work inside every optimizer step, see
    :class:`~gap_mm.engine.optimizers.StepStage`).

    Events for step ``t + 1`` happen at the end of step ``t``
    (``after_train_iter``, or ``after_train_epoch`` for an epoch schedule),
    before CheckpointHook saves, so a checkpoint holds the masks of the step
    it resumes at and its weights are zero wherever masked. Priority
    ``ABOVE_NORMAL``: masks change before EMAHook (``NORMAL``) averages the
    weights and before LoggerHook and CheckpointHook read them.

    Args:
        sparsity (float, optional): Target sparsity in ``[0, 1)``. None
            takes the config's top-level ``gap_sparsity``, else 0.8, so
            ``--cfg-options gap_sparsity=0.9`` works under any launcher.
        distribution (str, optional): ``'uniform'``, ``'erk'`` or
            ``'global'``. None takes ``gap_distribution``, else
            ``'uniform'``.
        pattern (str, optional): ``'unstructured'`` or ``'N:M'``. None
            takes ``gap_pattern``, else ``'unstructured'``.
        partitions (int | list): K contiguous parameter-balanced
            partitions, or a list of regex groups. Defaults to 1.
        module_types (list, optional): Layer types whose weights are
            prunable: ``torch.nn`` names, names in MMEngine's ``MODELS``
            (mmcv's layers) or classes. Defaults to Conv1d/2d/3d,
            ConvTranspose1d/2d/3d, Linear and MultiheadAttention (its q, k
            and v projections, each pruned to its own count).
        include (list[str], optional): Regexes; prune only matching names.
        exclude (list[str], optional): Regexes of names that stay dense.
        prune_output_layers (bool): Prune the output layers of heads
            (classification, regression, objectness, centerness, mask
            logits; see :mod:`gap_mm.sparsity.output_layers`) too. Defaults
            to False: they stay dense, named in the start table. Frozen
            weights (``requires_grad=False``) are never pruned.
        overrides (dict, optional): Regex → sparsity per layer.
        erk_scale (float): Power on the ERK score. Defaults to 1.0.
        sparsifier (dict, optional): The mask policy from
            :data:`gap_mm.registry.SPARSIFIERS`, e.g.
            ``dict(type='MagnitudeSparsifier', score=dict(type='magnitude'))``
            (the default). The options above are passed to it.
        init (str): The masks at a fresh start: ``'magnitude'`` of the
            initial weights, ``'random'`` (seeded by the run's seed, the
            same on every rank) or ``'none'`` (dense). Defaults to
            ``'magnitude'``.
        regrown_second_moment (str): Adam-style second moments of regrown
            weights start at ``'mean'`` (the mean over the tensor's other
            positions) or ``'zero'``. Momentum and first moments always
            start at 0. Defaults to ``'mean'``.
        verify_sync (bool): In distributed training, check after every event
            that all ranks hold identical masks. Defaults to True.
        print_table (bool): Log the per-layer table at the start and the
            end of training. Defaults to True.
    """

    state_key = CKPT_KEY
    #: Whether the method works with an N:M ``pattern``.
    supports_nm = True
    #: Whether :meth:`update` runs again when a run resumes at the step its
    #: checkpoint was saved for (safe for an idempotent reconcile; an event
    #: such as a drop-and-grow must not run twice).
    update_on_resume = False

    def __init__(self,
                 sparsity: Optional[float] = None,
                 distribution: Optional[str] = None,
                 pattern: Optional[str] = None,
                 partitions: Union[int, Sequence] = 1,
                 module_types: Optional[Sequence] = None,
                 include: Optional[Sequence[str]] = None,
                 exclude: Optional[Sequence[str]] = None,
                 prune_output_layers: bool = False,
                 overrides: Optional[Mapping[str, float]] = None,
                 erk_scale: float = 1.0,
                 sparsifier: Optional[Mapping] = None,
                 init: str = 'magnitude',
                 regrown_second_moment: str = 'mean',
                 verify_sync: bool = True,
                 print_table: bool = True) -> None:
        super().__init__()
        # Validate what does not need the model now, so that a bad config
        # fails before the model is built.
        self._given = dict(
            sparsity=sparsity, distribution=distribution, pattern=pattern)
        self._check_sparse_options(self._given)
        self._check_pattern_supported(pattern)
        bad_int = isinstance(partitions, int) and (isinstance(
            partitions, bool) or partitions < 1)
        if bad_int or not isinstance(partitions, (int, list, tuple)):
            raise GaPConfigError(
                f'partitions must be a positive int or a list '
                f'of regex groups, but got {partitions!r}')
        if init not in INITS:
            raise GaPConfigError(
                f'init must be one of {INITS}, but got {init!r}')
        if regrown_second_moment not in REGROWN_SECOND_MOMENTS:
            raise GaPConfigError(f'regrown_second_moment must be one of '
                                 f'{REGROWN_SECOND_MOMENTS}, but got '
                                 f'{regrown_second_moment!r}')
        if sparsifier is not None and not (isinstance(sparsifier, Mapping)
                                           and 'type' in sparsifier):
            raise GaPConfigError(
                f"sparsifier must be a dict with a 'type' in "
                f'{sorted(SPARSIFIERS.module_dict)}, but got {sparsifier!r}')
        self.partitions = partitions
        self.module_types = resolve_module_types(module_types)
        if not isinstance(prune_output_layers, bool):
            raise GaPConfigError(f'prune_output_layers must be True or '
                                 f'False, but got {prune_output_layers!r}')
        self.include = include
        self.exclude = exclude
        self.prune_output_layers = prune_output_layers
        self.overrides = overrides
        self.erk_scale = erk_scale
        self.sparsifier_cfg = dict(
            sparsifier or dict(type='MagnitudeSparsifier'))
        self.init = init
        self.regrown_second_moment = regrown_second_moment
        self.verify_sync = verify_sync
        self.print_table = print_table
        self.sparsity: Optional[float] = None
        self.distribution: Optional[str] = None
        self.pattern: Optional[str] = None
        self.sparsifier: Optional[Sparsifier] = None
        #: What :meth:`select_params` selected, and what it left out.
        self.selection: Optional[PrunableParams] = None
        self._stats: Dict[str, float] = {}
        self._ema_params: Dict[str, torch.Tensor] = {}

    @staticmethod
    def _check_sparse_options(values: Mapping[str, Any]) -> None:
        if values.get('sparsity') is not None:
            check_sparsity(values['sparsity'])
        dist_ = values.get('distribution')
        if dist_ is not None and dist_ not in DISTRIBUTIONS:
            raise GaPConfigError(f'distribution must be one of '
                                 f'{DISTRIBUTIONS}, but got {dist_!r}')
        if values.get('pattern') is not None:
            parse_pattern(values['pattern'])

    def _check_pattern_supported(self, pattern: Optional[str]) -> None:
        if not self.supports_nm and parse_pattern(pattern) is not None:
            raise GaPConfigError(
                f'{type(self).__name__} works on unstructured masks; the N:M '
                f'pattern {pattern!r} is not supported. GaPHook trains N:M, '
                f'cyclic or static.')

    # ------------------------------------------------ for the subclasses
    def update(self, runner, step: int) -> None:
        """Bring the masks to what step ``step`` needs (call
        :meth:`apply_event` with what changed)."""
        raise NotImplementedError

    def method_state(self) -> Dict[str, Any]:
        """The method's own state for the checkpoint (plain data and
        tensors)."""
        return {}

    def load_method_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`method_state` (called before :meth:`update`)."""

    def step_stage(self) -> Optional[StepStage]:
        """Work inside every optimizer step, or None."""
        return None

    def sync_group(self, step: int):
        """The process group whose ranks must hold identical masks at
        ``step`` (None: every rank)."""
        return None

    # ---------------------------------------------------------- set-up
    def _resolve_options(self, runner) -> None:
        cfg = getattr(runner, 'cfg', None)
        values = dict(self._given)
        if cfg is not None:
            values.update(
                resolve_gap_variables(
                    cfg,
                    self._given,
                    hook=type(self).__name__,
                    work_dir=getattr(runner, 'work_dir', None)))
        for key, default in DEFAULTS.items():
            if values[key] is None:
                values[key] = default
        self._check_sparse_options(values)
        self._check_pattern_supported(values['pattern'])
        self.sparsity = check_sparsity(values['sparsity'])
        self.distribution = values['distribution']
        self.pattern = values['pattern']

    def select_params(self, model: torch.nn.Module) -> PrunableParams:
        """The prunable weights of ``model`` by name (``module_types``,
        ``include``, ``exclude``, ``prune_output_layers``; frozen weights
        left out); a method may leave out more (with
        :meth:`PrunableParams.subset`)."""
        return select_prunable(model, self.module_types, self.include,
                               self.exclude, self.prune_output_layers)

    def build_sparsifier(self, model: torch.nn.Module) -> Sparsifier:
        """Select the prunable layers of ``model`` and build the
        sparsifier."""
        params = self.select_params(model)
        self.selection = params
        return build_registered(
            SPARSIFIERS,
            self.sparsifier_cfg,
            'sparsifier',
            GaPConfigError,
            default_args=dict(
                params=params,
                sparsity=self.sparsity,
                distribution=self.distribution,
                pattern=self.pattern,
                overrides=self.overrides,
                partitions=self.partitions,
                erk_scale=self.erk_scale),
            base=Sparsifier)

    def before_run(self, runner) -> None:
        self._resolve_options(runner)
        self.sparsifier = self.build_sparsifier(self.unwrap_model(runner))
        if not self.trains(runner):
            # Testing or validating a checkpoint: its weights are already
            # zero where pruned and nothing here changes a mask.
            print_log(
                f'{type(self).__name__}: {len(self.sparsifier.names)} '
                f'prunable layers; this run does not train, so no schedule '
                f'is built and the weights are used as loaded',
                logger='current')
            return
        self.set_run_length(runner)
        self.schedule = self.build_schedule()
        print_log(
            f'{type(self).__name__}: {len(self.sparsifier.names)} prunable '
            f'layers in {self.sparsifier.num_partitions} partitions, '
            f'sparsity {self.sparsity} ({self.distribution}, '
            f'{self.describe_pattern()}), schedule {self.schedule!r}',
            logger='current')

    def describe_pattern(self) -> str:
        """How the weights are pruned, for the log (the sparsifier's
        pattern: 'unstructured' or 'N:M')."""
        return str(self.pattern)

    def _step(self, runner) -> int:
        return runner.epoch if self.schedule.by_epoch else runner.iter

    def _unit(self) -> str:
        return self.schedule.unit[:-1]

    def _check_run_length(self, runner) -> None:
        if self.schedule.by_epoch:
            if isinstance(runner.train_loop, IterBasedTrainLoop):
                raise GaPConfigError(
                    f'{type(self).__name__} has an epoch-based schedule '
                    f'(by_epoch=True), but the run is iteration-based '
                    f'(train_cfg max_iters={runner.max_iters}): give the '
                    f'schedule in iterations with by_epoch=False, or train '
                    f'by epochs (train_cfg=dict(by_epoch=True, '
                    f'max_epochs=...)).')
            self.schedule.check_fits(runner.max_epochs)
        else:
            self.schedule.check_fits(runner.max_iters)

    def before_train(self, runner) -> None:
        wrapper = self.check_optim_wrapper(
            runner, 'attach_sparsifier',
            f'{type(self).__name__} needs an optimizer wrapper that masks '
            f'gradients and weights: set')
        self._check_run_length(runner)
        super().before_train(runner)  # the seed
        wrapper.attach_sparsifier(self.sparsifier)
        stage = self.step_stage()
        if stage is not None:
            wrapper.add_stage(stage)
        self._ema_params = self._find_ema_params(runner)
        step = self._step(runner)
        if self._loaded_state is not None:
            state = self._loaded_state
            self.sparsifier.load_state_dict(state['sparsifier'])
            if state.get('hook') == type(self).__name__:
                self.load_method_state(state.get('method') or {})
            print_log(
                f'{type(self).__name__}: restored the masks of '
                f'{len(state["sparsifier"].get("masks", {}))} sparse layers '
                f'at {self._unit()} {state["step"]}',
                logger='current')
            # A checkpoint is saved after the events of the step it resumes
            # at: apply them again only when starting at another step
            # (load_from a sparse checkpoint without resume).
            if state['step'] != step or self.update_on_resume:
                self.update(runner, step)
        else:
            self.initialize_masks(runner, step)
            self.update(runner, step)
        self.mask_ema()
        if self.print_table:
            print_log(self.start_table(runner), logger='current')

    def start_table(self, runner) -> str:
        """The table logged at the start of training: every prunable layer
        with its mask, the partitions' sizes, what stays dense (frozen
        weights and output layers by name, any other large weight with how
        to include it) and the warnings about the config (custom_hooks that
        replaced an inherited list)."""
        rows = self.sparsifier.layer_stats()
        title = f'{type(self).__name__} masks at the start of training:'
        parts = [format_layer_table(rows, title), format_partitions(rows)]
        warnings = [
            msg
            for _, msg in replaced_base_hooks(getattr(runner, 'cfg', None))
        ]
        if self.selection is not None:
            notes = format_selection(
                self.unwrap_model(runner), self.selection, warnings=warnings)
        else:
            notes = '\n'.join(f'Warning: {w}' for w in warnings)
        if notes:
            parts.append(notes)
        return '\n'.join(parts)

    def initialize_masks(self, runner, step: int) -> None:
        """The masks of a fresh start, by ``init``: every partition pruned to
        its target by the initial magnitudes or by seeded random scores, or
        none (dense)."""
        if self.init == 'none':
            return
        score = None
        if self.init == 'random':
            # the run's seed, the same on every rank
            score = RandomScore(seed=self.run_seed)
        self.apply_event(
            runner,
            step,
            pruned=self.sparsifier.prune(
                range(self.sparsifier.num_partitions), score=score),
            what=f'initial masks ({self.init})',
            event='init',
            init=self.init)
        self._check_no_layer_emptied()

    def _check_no_layer_emptied(self) -> None:
        """A layer left without a single weight cannot learn: stop with the
        layers named instead of training a broken model."""
        sp = self.sparsifier
        emptied = [
            n for n in sp.names if sp.is_sparse(n) and not all(
                bool(b.any()) for b in sp.blocks_of(n, sp.keep_mask(n)))
        ]
        if not emptied:
            return
        why = ''
        if self.distribution == 'global':
            why = (' One magnitude threshold over freshly initialised layers '
                   'compares their initialisation scales (Kaiming, Xavier, '
                   'N(0, 0.01)) rather than their importance.')
        remedies = ['exclude these layers', 'give them overrides']
        if self.distribution != 'erk':
            remedies.insert(0, "use distribution='erk' (non-uniform by "
                            "layer shape, as in RigL)")
        else:
            remedies.insert(0, 'lower the sparsity')
        raise GaPConfigError(
            f'{type(self).__name__} at sparsity {self.sparsity} with '
            f'distribution {self.distribution!r} would prune every weight '
            f'of {emptied}.{why} To keep them: {", ".join(remedies[:-1])} '
            f'or {remedies[-1]}.')

    # ------------------------------------------------------------ EMA
    def _find_ema_params(self, runner) -> Dict[str, torch.Tensor]:
        """The averaged copies of the prunable weights held by EMAHooks."""
        found: Dict[str, torch.Tensor] = {}
        for hook in runner.hooks:
            if isinstance(hook, EMAHook) and getattr(hook, 'ema_model',
                                                     None) is not None:
                params = dict(hook.ema_model.module.named_parameters())
                missing = [n for n in self.sparsifier.names if n not in params]
                if missing:
                    raise GaPConfigError(
                        f'the EMAHook\'s averaged model has no parameters '
                        f'{missing[:3]} of the prunable layers, so its '
                        f'weights cannot be kept sparse')
                found.update({n: params[n] for n in self.sparsifier.names})
        return found

    def mask_ema(self) -> None:
        """Zero the EMA model's weights where the masks prune.

        Called before EMAHook's update at every iteration and after every
        event: the average of weights that are 0 at every masked position
        since the last event stays exactly 0 there, so validation and the
        saved ``state_dict`` (both of which EMAHook swaps to the averaged
        weights) are as sparse as the model, and a regrown weight's average
        starts at 0 like the weight.
        """
        if self._ema_params:
            self.sparsifier.apply_masks_to_(self._ema_params)

    # ---------------------------------------------------------- events
    def apply_event(self,
                    runner,
                    step: int,
                    pruned: Optional[Mapping[str, torch.Tensor]] = None,
                    grown: Optional[Mapping[str, torch.Tensor]] = None,
                    what: str = '',
                    event: str = 'masks',
                    **fields) -> None:
        """Finish a mask change: zero the optimizer state where ``pruned``,
        reset it where ``grown``, keep the EMA sparse, check the ranks, log
        it, and append it to the event record (:meth:`record_event`, with
        the sparsity after the change).

        Args:
            runner: The Runner.
            step (int): The step the new masks apply from.
            pruned (Mapping[str, Tensor], optional): Bool masks of the
                positions just pruned, or their int64 flat positions.
            grown (Mapping[str, Tensor], optional): Bool masks of the
                positions just regrown (their weights are 0), or their
                int64 flat positions.
            what (str): A description for the log line.
            event (str): The kind of event, for the record.
            **fields: The event's own fields, for the record.
        """
        # Regrown weights are 0 already; momentum restarts at 0, Adam's
        # second moment at the tensor's level.
        self.sparsifier.reset_optimizer_state_(runner.optim_wrapper.optimizer,
                                               pruned or {}, grown or {},
                                               self.regrown_second_moment)
        self.mask_ema()
        where = f'at {self._unit()} {step}'
        if self.verify_sync:
            verify_masks_across_ranks(self.sparsifier, where,
                                      self.sync_group(step))
        self._stats = self.sparsifier.summarize(self.sparsifier.layer_stats(),
                                                self.sparsifier.num_partitions)
        print_log(
            f'{self.method_name} {where}: {what}; sparsity '
            f'{100 * self._stats["sparsity"]:.2f}%',
            logger='current')
        fields.setdefault('sparsity', float(self._stats['sparsity']))
        if self.schedule.by_epoch:
            # the iteration the epoch ``step`` starts at
            fields = dict(epoch=int(step), **fields)
            step = runner.iter
        self.record_event(runner, step, event, **fields)

    def _update_scalars(self, runner) -> None:
        if not self._stats:
            self._stats = self.sparsifier.summarize(
                self.sparsifier.layer_stats(), self.sparsifier.num_partitions)
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
        if not self.schedule.by_epoch:
            self.update(runner, runner.iter + 1)
        self.mask_ema()
        self._update_scalars(runner)

    def after_train_epoch(self, runner) -> None:
        if self.schedule.by_epoch:
            self.update(runner, runner.epoch + 1)
            self.mask_ema()

    def after_train(self, runner) -> None:
        if self.print_table:
            print_log(
                format_layer_table(
                    self.sparsifier.layer_stats(),
                    f'{type(self).__name__} masks at the end of training:'),
                logger='current')

    # ----------------------------------------------------- checkpoints
    def checkpoint_state(self, runner) -> Optional[Dict[str, Any]]:
        if self.sparsifier is None or self.schedule is None:
            return None
        step = runner.epoch + 1 if self.schedule.by_epoch else runner.iter + 1
        return write_state({},
                           hook=type(self).__name__,
                           step=step,
                           by_epoch=self.schedule.by_epoch,
                           sparsifier=self.sparsifier.state_dict(),
                           dense_partitions=sorted(
                               self.sparsifier.dense_partitions),
                           method=self.method_state())

    def read_checkpoint_state(self, runner,
                              checkpoint: Mapping) -> Optional[Dict]:
        state = read_state(checkpoint)
        if state is None:
            print_log(
                f'{type(self).__name__}: the loaded checkpoint has no '
                f'sparsity state; the masks are chosen afresh',
                logger='current',
                level=logging.WARNING)
            return None
        if state['hook'] != type(self).__name__:
            print_log(
                f'{type(self).__name__}: the loaded checkpoint was written by '
                f'{state["hook"]}; its masks are used, its method state is '
                f'not',
                logger='current',
                level=logging.WARNING)
        return state
