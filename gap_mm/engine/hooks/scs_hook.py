# Copyright (c) gap_mm contributors. All rights reserved.
import logging
import math
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Union

import torch
from mmengine.hooks import LoggerHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from gap_mm.errors import GaPConfigError
from gap_mm.schedules.scs import LAMBDA_CONTROLLERS, SCSSchedule, next_lambda
from gap_mm.sparsity import init_regrown_state_
from gap_mm.sparsity.gates import check_landing_target
from ..optimizers import StepStage
from .base_method_hook import BaseMethodHook


class _GateSGD(StepStage):
    """Plain SGD on the gate logits inside every optimizer step, before the
    weights' optimizer steps: ``s -= gate_lr * grad``; the gradient is then
    dropped, so the weights' optimizer never sees the logits. Stateless: a
    resumed run continues exactly."""

    def __init__(self, hook: 'SCSHook') -> None:
        self.hook = hook

    @torch.no_grad()
    def before_mask(self, iteration: int) -> None:
        hook = self.hook
        scale = hook._wrapper.grad_scale()  # the loss scale under AMP
        logits = [
            g.logits for g in hook.model.gates.gates().values()
            if g.logits.grad is not None
        ]
        if not logits:
            return
        grads = [p.grad for p in logits]
        # one check (one device sync) for all: under AMP a step whose
        # gradients overflowed is skipped
        if bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()):
            torch._foreach_add_(logits, grads, alpha=-hook.gate_lr / scale)
        for param in logits:
            param.grad = None


@HOOKS.register_module()
class SCSHook(BaseMethodHook):
    """Drives the gates of an :class:`~gap_mm.models.SCSModel`:
    structured continuous sparsification (a reconstruction of Yuan,
    Savarese and Maire, ICLR 2021; see :mod:`gap_mm.sparsity.gates`).

    Before every iteration: ``beta`` from the
    :class:`~gap_mm.schedules.scs.SCSSchedule`, and a fresh draw of the
    gates' Bernoulli samples from a generator seeded by ``(seed, step)``
    (the same on every rank, and after a resume). Every
    ``lambda_interval`` iterations: with ``flops_target``, the FLOPs
    weight ``lambda`` moves towards the value at which the hard structure
    ``1[s > 0]`` computes ``flops_target`` of the full FLOPs
    (:func:`~gap_mm.schedules.scs.next_lambda`); without, ``lambda`` stays
    fixed. At ``freeze`` the structure is fixed and the rest of the run
    trains it without the penalty. ``lambda`` is a buffer of the model and
    ``beta`` and the samples are functions of the step, so a checkpoint
    resumes exactly.

    Before ``begin`` (a dense warm-up) the gates stay at ``1[s > 0]`` (all
    on in pruning mode), nothing is drawn and there is no penalty.

    Growing mode (``SCSModel(seed_width=...)``): when gating begins, the
    channels outside the seed are silenced
    (:meth:`~gap_mm.sparsity.gates.GateSet.silence_off_channels_`: the next
    layer's weights that read them set to 0), so a channel a draw switches
    on joins the network at 0, as a regrown weight does. The optimizer
    state of those weights and of the channels' own weights and norm
    restarts as a regrown weight's
    (:func:`~gap_mm.sparsity.init_regrown_state_`: Adam's second moments at
    the mean of the rest of the tensor, not at 0).

    The gate logits are trained by plain SGD at ``gate_lr`` inside the
    optimizer wrapper's step (a :class:`~gap_mm.engine.optimizers.
    StepStage`; ``optim_wrapper=dict(type='GaPOptimWrapper', ...)``), not
    by the weights' optimizer, so that a logit moves by its gradient: the
    detection term against the FLOPs it costs. ``gate_lr=None`` leaves the
    logits to the weights' optimizer (its ``paramwise_cfg``).

    Every iteration's FLOPs (the draws while gating, else the hard
    structure) go to the message hub as ``train/scs_step_flops``. At the
    end of a run that trained, the event record gets ``{"event":
    "summary", "values": {"train_flops": ..., "train_flops_all_iterations":
    ...}}``: the mean over the iterations the LoggerHook logged (the value
    it logs for this key is the iteration's own, not a window mean) and
    the mean over every iteration. Their running sums are kept in the
    checkpoint under ``'scs_state'``, so that a resumed run writes the same
    means. The freeze (and landing) and the silencing of growing mode are
    events of the record too.

    Args:
        freeze (int | float): Iteration from which the structure is fixed
            (a float in (0, 1): a fraction of the run). Defaults to 0.8.
        begin (int | float): Iteration at which gating starts, before
            ``freeze`` (a float in [0, 1): a fraction of the run).
            Defaults to 0.
        flops_target (float, optional): FLOPs of the final structure over
            the full model's, in (0, 1]; None keeps ``lambda`` fixed.
            Defaults to 0.5.
        lambda_rate (float): Step size of the ``lambda`` controller, > 0.
            Defaults to 0.1.
        lambda_controller (str): ``'multiplicative'`` (``lambda`` stays
            > 0: the FLOPs term only prunes, for pruning mode) or
            ``'signed'`` (``lambda += lambda_rate * (flops - target) /
            target``, negative below the target: the term grows gates back,
            for growing mode from ``SCSModel(seed_width=...)``; there
            ``lambda_rate`` is an absolute step, of the order of the pruning
            mode's ``lambda_init``). See
            :func:`~gap_mm.schedules.scs.next_lambda`. Defaults to
            ``'multiplicative'``.
        silence_seed (bool): Growing mode: zero what the next layers read
            from the channels outside the seed when gating begins, and
            restart the optimizer state there and of those channels' own
            parameters. Defaults to True.
        beta_init (float): Defaults to 1.
        beta_final (float): Defaults to 200.
        lambda_interval (int): Defaults to 10.
        gate_lr (float, optional): Learning rate of the gate logits' SGD,
            > 0, or None (the weights' optimizer trains them). Defaults to
            100.
        land_on_target (bool): At the freeze, replace the structure
            ``1[s > 0]`` by the largest within ``flops_target`` that keeps
            the gates of highest logit and each layer's top channel
            (:meth:`~gap_mm.models.SCSModel.land_`: every logit shifted by
            one threshold), so that the frozen and exported model computes
            at most the target even where the ``lambda`` controller did not
            bring the structure there in time, and no less than it needs to
            where the structure fell below. Needs ``flops_target``.
            Defaults to False (the structure the controller reached).
        seed (int): Seed of the gate samples. Defaults to 0.
    """

    method_name = 'SCS'
    run_fractions = dict(freeze=1, begin=0)
    state_key = 'scs_state'

    def __init__(self,
                 freeze: Union[int, float] = 0.8,
                 begin: Union[int, float] = 0,
                 flops_target: Optional[float] = 0.5,
                 lambda_rate: float = 0.1,
                 lambda_controller: str = 'multiplicative',
                 silence_seed: bool = True,
                 beta_init: float = 1.0,
                 beta_final: float = 200.0,
                 lambda_interval: int = 10,
                 gate_lr: Optional[float] = 100.0,
                 land_on_target: bool = False,
                 seed: int = 0) -> None:
        if flops_target is not None and (isinstance(
                flops_target, bool) or not isinstance(flops_target,
                                                      (int, float))
                                         or not 0 < flops_target <= 1):
            raise GaPConfigError(
                f'SCSHook flops_target must be in (0, 1] (a fraction of the '
                f'full model\'s FLOPs) or None, got {flops_target!r}')
        if isinstance(
                lambda_rate,
                bool) or not isinstance(lambda_rate,
                                        (int, float)) or not lambda_rate > 0:
            raise GaPConfigError(
                f'SCSHook lambda_rate must be > 0, got {lambda_rate!r}')
        if lambda_controller not in LAMBDA_CONTROLLERS:
            raise GaPConfigError(
                f'SCSHook lambda_controller must be one of '
                f'{LAMBDA_CONTROLLERS}, got {lambda_controller!r}')
        if gate_lr is not None and (
                isinstance(gate_lr, bool) or not isinstance(
                    gate_lr, (int, float)) or not math.isfinite(gate_lr)
                or not gate_lr > 0):
            raise GaPConfigError(
                f'SCSHook gate_lr must be a number > 0 (the SGD step of the '
                f'gate logits) or None (the weights\' optimizer trains '
                f'them), got {gate_lr!r}')
        if not isinstance(land_on_target, bool):
            raise GaPConfigError(
                f'SCSHook land_on_target must be True or False, got '
                f'{land_on_target!r}')
        if land_on_target and flops_target is None:
            raise GaPConfigError(
                'SCSHook land_on_target=True lands the frozen structure on '
                'flops_target, but flops_target is None: give a target in '
                '(0, 1] or land_on_target=False')
        if isinstance(freeze, float) and not 0 < freeze < 1:
            raise GaPConfigError(
                f'SCSHook freeze={freeze}: a float is a fraction of the run '
                f'and must be in (0, 1) (the structure is frozen before the '
                f'run ends, and trained as it is after); give an int for an '
                f'iteration')
        if isinstance(begin, float) and not 0 <= begin < 1:
            raise GaPConfigError(
                f'SCSHook begin={begin}: a float is a fraction of the run '
                f'and must be in [0, 1); give an int for an iteration')
        super().__init__()
        self.freeze = freeze
        self.begin = begin
        self.flops_target = flops_target
        self.lambda_rate = float(lambda_rate)
        self.lambda_controller = lambda_controller
        self.silence_seed = bool(silence_seed)
        self.land_on_target = land_on_target
        self.gate_lr = None if gate_lr is None else float(gate_lr)
        self.seed = int(seed)
        self.configure_schedule(
            dict(
                type='SCSSchedule',
                freeze=freeze,
                begin=begin,
                beta_init=beta_init,
                beta_final=beta_final,
                lambda_interval=lambda_interval))
        self.schedule: Optional[SCSSchedule] = None
        self.model = None
        self._wrapper = None
        self._stage = _GateSGD(self)
        #: Sum and count of the per-iteration FLOPs ratios
        #: (``train/scs_step_flops``) of the iterations trained so far, of
        #: all of them and of those the LoggerHook logged.
        self._flops_sum = 0.0
        self._flops_count = 0
        self._logged_sum = 0.0
        self._logged_count = 0
        self._logger_hook: Optional[LoggerHook] = None

    def before_run(self, runner) -> None:
        model = self.unwrap_model(runner)
        if not hasattr(model, 'gates') or not hasattr(model, 'flops_ratio'):
            raise GaPConfigError(
                f'SCSHook needs model=dict(type=\'SCSModel\', architecture='
                f'<the detector>, ...), but the model is '
                f'{type(model).__name__}')
        self.model = model
        if not self.trains(runner):
            return  # testing: the gates are 1[s > 0]
        if self.flops_target is not None and self.lambda_controller == \
                'multiplicative' and not float(model.scs_lambda) > 0:
            raise GaPConfigError(
                f'SCSHook steers lambda multiplicatively towards flops_target='
                f'{self.flops_target}, so it must start > 0, but the model\'s '
                f'lambda_init is {float(model.scs_lambda)}: give lambda_init '
                f'> 0 (0.01 on the demo), lambda_controller=\'signed\', or '
                f'flops_target=None for a fixed lambda')
        if getattr(model, 'seed_width', None) is not None and \
                self.lambda_controller == 'multiplicative':
            print_log(
                'SCSHook: the model grows from a seed (seed_width) but lambda '
                'is multiplicative, so the FLOPs term can only prune: use '
                "lambda_controller='signed' to grow towards the target",
                logger='current',
                level=logging.WARNING)
        if getattr(model, 'seed_width', None) is not None and \
                self.silence_seed:
            frozen = model.gates.frozen_consumers(model.architecture)
            if frozen:
                raise GaPConfigError(
                    f'SCSHook grows from a seed and silences the channels '
                    f'outside it by zeroing what the next layers read, but '
                    f'{len(frozen)} of those layers are frozen '
                    f'(requires_grad=False), so their zeros would never '
                    f'learn back: {frozen}. Train them (frozen_stages=-1 in '
                    f'the backbone), or keep their producers ungated with '
                    f'SCSModel(exclude=[...])')
        if self.land_on_target:
            # before training, not at the freeze: the floor is fixed by the
            # ungated layers
            check_landing_target(model.architecture, model.gates,
                                 model.flops, self.flops_target)
        self.set_run_length(runner)
        self.schedule = self.build_schedule()
        self.schedule.check_fits(runner.max_iters)
        trainer = "the weights' optimizer" if self.gate_lr is None \
            else f'SGD at lr {self.gate_lr:g}'
        print_log(
            f'SCSHook: {len(model.gates.channel_sites)} gated layers, '
            f'{len(model.gates.block_sites)} gated blocks, '
            f'{self.schedule!r}, FLOPs target {self.flops_target} '
            f'({self.lambda_controller} lambda'
            f'{", landed on at the freeze" if self.land_on_target else ""}'
            f'), gate logits trained by {trainer}',
            logger='current')

    def before_train(self, runner) -> None:
        if self.gate_lr is not None:
            wrapper = self.check_optim_wrapper(
                runner, 'add_stage',
                f'SCSHook(gate_lr={self.gate_lr:g}) trains the gate logits '
                f'inside the optimizer step and needs',
                otherwise='; or set gate_lr=None to leave the logits to the '
                'weights\' optimizer')
            self._wrapper = wrapper
            wrapper.add_stage(self._stage)
        super().before_train(runner)
        state = self._loaded_state
        if state is not None and state.get('step') == runner.iter:
            # resumed where the checkpoint was saved: the mean goes on
            method = state.get('method') or {}
            self._flops_sum = float(method.get('flops_sum', 0.0))
            self._flops_count = int(method.get('flops_count', 0))
            self._logged_sum = float(method.get('logged_sum', 0.0))
            self._logged_count = int(method.get('logged_count', 0))
        self._logger_hook = next(
            (h for h in runner.hooks if isinstance(h, LoggerHook)), None)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        step, gates = runner.iter, self.model.gates
        gates.set_beta(self.schedule.beta(step))
        gates.warmup = step < self.schedule.begin
        if step == self.schedule.begin and self.silence_seed and getattr(
                self.model, 'seed_width', None) is not None:
            self._silence(runner)
        if gates.warmup:
            gates.stochastic = False
        elif self.schedule.is_frozen(step):
            if not gates.frozen:
                landed = ''
                reached = float(self.model.flops_ratio(hard=True))
                threshold = None
                if self.land_on_target:
                    threshold = self.model.land_(self.flops_target)
                    if threshold is None:
                        landed = (f' (already the largest structure within '
                                  f'the target {self.flops_target})')
                    else:
                        landed = (f' (landed on the target '
                                  f'{self.flops_target} from {reached:.3f}:'
                                  f' the gates of highest logit kept, and '
                                  f'each layer\'s top channel)')
                gates.freeze()
                frozen = float(self.model.flops_ratio(hard=True))
                print_log(
                    f'SCS at iteration {step}: structure frozen, FLOPs '
                    f'{frozen:.3f} of the full model{landed}',
                    logger='current')
                self.record_event(
                    runner,
                    step,
                    'freeze',
                    flops=frozen,
                    reached=reached,
                    landed=threshold is not None,
                    target=self.flops_target)
        else:
            gates.stochastic = True
            gates.resample(self.seed, step)

    def _silence(self, runner) -> None:
        """Growing mode, as gating begins: the consumers' weights that read
        the channels outside the seed start from 0, and the optimizer state
        of those weights and of the channels' own parameters restarts as a
        regrown weight's does (first moments and SGD's momentum 0; Adam's
        second moments the mean of the tensor's other positions, which had
        no gradient through the warm-up)."""
        model = self.model.architecture
        gates = self.model.gates
        channels = gates.off_channel_slices(model)
        zeroed = gates.silence_off_channels_(model)
        restarted = OrderedDict(channels)
        for name, (param, mask) in zeroed.items():
            if name in restarted:
                mask = mask | restarted[name][1]
            restarted[name] = (param, mask)
        init_regrown_state_(runner.optim_wrapper.optimizer,
                            {n: p for n, (p, _) in restarted.items()},
                            {n: m for n, (_, m) in restarted.items()},
                            second_moment='mean')
        weights = sum(int(mask.sum()) for _, mask in zeroed.values())
        print_log(
            f'SCS at iteration {runner.iter}: gating begins from the seed; '
            f'the {weights} weights of {len(zeroed)} layers that read the '
            f'channels outside it set to 0, so that a grown channel joins '
            f'the network at 0, and the optimizer state of those weights and '
            f'of the channels\' own parameters restarted',
            logger='current')
        self.record_event(
            runner, runner.iter, 'silence', weights=weights,
            layers=len(zeroed))

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        step, model = runner.iter, self.model
        ratio = float(model.flops_ratio(hard=True))
        if self.flops_target is not None and self.schedule.is_lambda_step(
                step):
            model.scs_lambda.fill_(
                next_lambda(
                    float(model.scs_lambda), ratio, self.flops_target,
                    self.lambda_rate, self.lambda_controller))
        # what this step computed: the draws while gating, else the hard
        # structure (the training FLOPs a restructured network would spend)
        step_flops = float(model.flops_ratio(
            sampled=True)) if model.gates.stochastic else ratio
        hub = runner.message_hub
        hub.update_scalar('train/scs_flops', ratio)
        hub.update_scalar('train/scs_step_flops', step_flops)
        hub.update_scalar('train/scs_lambda', float(model.scs_lambda))
        hub.update_scalar('train/scs_beta', model.gates.beta)
        self._flops_sum += step_flops
        self._flops_count += 1
        if self._logs_this_iteration(runner, batch_idx):
            self._logged_sum += step_flops
            self._logged_count += 1

    def _logs_this_iteration(self, runner, batch_idx: int) -> bool:
        """Whether the LoggerHook writes the scalars of this iteration (its
        own rule, through its own helpers)."""
        hook = self._logger_hook
        if hook is None:
            return False
        if hook.every_n_inner_iters(batch_idx, hook.interval):
            return True
        return hook.end_of_epoch(runner.train_dataloader, batch_idx) and (
            not hook.ignore_last
            or len(runner.train_dataloader) <= hook.interval)

    def train_flops(self) -> Dict[str, Optional[float]]:
        """The mean of ``train/scs_step_flops`` over the iterations the
        LoggerHook logged (``train_flops``) and over every iteration
        trained (``train_flops_all_iterations``), those before a resume
        included; None where there were none."""
        return dict(
            train_flops=self._logged_sum / self._logged_count
            if self._logged_count else None,
            train_flops_all_iterations=self._flops_sum / self._flops_count
            if self._flops_count else None)

    def after_run(self, runner) -> None:
        if self.schedule is not None and self._flops_count:
            self.record_event(
                runner, runner.iter, 'summary', values=self.train_flops())

    # ------------------------------------------------------ checkpoints
    def checkpoint_state(self, runner) -> Optional[Dict[str, Any]]:
        if self.schedule is None:
            return None
        return dict(
            hook=type(self).__name__,
            step=runner.iter + 1,
            method=dict(
                flops_sum=self._flops_sum,
                flops_count=self._flops_count,
                logged_sum=self._logged_sum,
                logged_count=self._logged_count))

    def read_checkpoint_state(self, runner,
                              checkpoint: Mapping) -> Optional[Dict]:
        state = checkpoint.get(self.state_key)
        if state is None:
            print_log(
                'SCSHook: the loaded checkpoint has no \'scs_state\'; the '
                'mean training FLOPs of the summary cover the iterations '
                'from here only',
                logger='current',
                level=logging.WARNING)
        return state
