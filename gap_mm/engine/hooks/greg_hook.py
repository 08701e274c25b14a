# Copyright (c) gap_mm contributors. All rights reserved.
import math
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from torch import nn

from gap_mm.errors import GaPConfigError
from gap_mm.sparsity import (GrowingPenalty, channel_followers, check_mode,
                             coupled_filter_params, expand_filters,
                             magnitude_ratio, pack_mask, pick_pruned,
                             unpack_mask, zero_optimizer_state_)
from ..optimizers import StepStage
from .base_sparsity_hook import BaseSparsityHook


class _PenaltyStage(StepStage):
    """Adds GReg's penalty to the dense gradients of every optimizer step,
    before the masks (there are none until the prune); after a filter-wise
    prune, keeps the removed channels' norm scale and shift at 0."""

    def __init__(self, hook: 'GRegHook') -> None:
        self.hook = hook

    def before_mask(self, iteration: int) -> None:
        hook = self.hook
        if hook.penalty is not None and hook.penalty.regs:
            hook.penalty.apply_(hook.grad_scale())
        for param, dead in hook.dead_channels.values():
            if param.grad is not None:
                param.grad.masked_fill_(dead, 0)

    @torch.no_grad()
    def after_step(self, iteration: int) -> None:
        for param, dead in self.hook.dead_channels.values():
            param.masked_fill_(dead, 0)


@HOOKS.register_module()
class GRegHook(BaseSparsityHook):
    """GReg, pruning by growing regularization (Wang et al., "Neural
    Pruning via Growing Regularization", ICLR 2021).

    Pruning *after* training, unlike GaP: start from a trained model
    (``load_from`` a dense checkpoint). The model stays dense while an L2
    penalty on the weights picked for pruning grows step by step, added to
    the gradient after backward (``grad += reg * w``, ordinary weight decay
    stays on); when it has driven them near 0 they are masked and the rest
    of the run fine-tunes with fixed masks. The phases follow
    :class:`~gap_mm.schedules.GRegSchedule`:

    * ``variant=1`` (GReg-1): the set is picked at ``begin`` by magnitude
      (per weight, or mean ``|w|`` per filter), per layer at its target
      sparsity (the hook's ``distribution``; exact counts). Every
      ``update_interval`` iterations its penalty grows by ``granularity``
      until ``upper_limit``; kept weights have none.
    * ``variant=2`` (GReg-2): first every weight's penalty grows by
      ``granularity_pick`` until ``upper_limit_pick``; then the set is
      picked, and grows as in GReg-1 while the kept weights get
      ``granularity_recover`` (a small negative penalty).
    * A layer also stops growing once its magnitude ratio ``mean |kept| /
      mean |picked|`` (averaged with momentum ``mag_ratio_momentum``)
      passes ``mag_ratio_limit``. When every layer has stopped, the penalty
      stays for ``stabilize`` iterations; then the picked weights (filters)
      are masked, their optimizer state is zeroed, and the masks stay
      fixed.

    The picked sets, penalties, magnitude ratios and phase go into the
    checkpoint, so a resumed run continues bit for bit.

    ``mode='filter'`` prunes whole output filters and leaves out the layers
    whose output channels are tied to others (a residual block's last conv
    and its downsample conv, a ResNet-18/34 stem, FPN lateral and output
    convs; see :func:`~gap_mm.sparsity.coupled_filter_params`), naming them
    in the log; ``exclude`` leaves out more. A pruned filter's channel is
    removed whole, as the authors' code does when it rebuilds the smaller
    network: the scale and shift of the batch norm after the filter (the
    layer's bias where no norm follows) are zeroed at the prune and stay 0,
    so the channel is exactly 0 and ``tools/model_converters/slim_model.py``
    cuts it out without changing the predictions. This covers the channel
    groups of :mod:`gap_mm.sparsity.channels` (inside residual blocks,
    RetinaNet's head towers, a box head's shared FCs); the log names pruned
    layers outside them, whose channels keep their norm's constant.

    Priority ``ABOVE_NORMAL`` like every sparsity hook (the penalty updates
    and the prune happen at the end of an iteration, before EMAHook and
    CheckpointHook).

    Args:
        mode (str): ``'unstructured'`` (per weight) or ``'filter'`` (per
            output filter). Defaults to ``'unstructured'``.
        variant (int): 1 (GReg-1) or 2 (GReg-2). Defaults to 1.
        update_interval (int): Iterations between penalty updates.
            Defaults to 5.
        granularity (float): Growth of the picked set's penalty per update,
            > 0. Defaults to 1e-4.
        upper_limit (float): The penalty growth stops at, >= granularity.
            Defaults to 1.0.
        stabilize (int | float): Iterations at the final penalty before the
            prune (a float in (0, 1]: a fraction of the run). Defaults to
            1000.
        granularity_pick (float): GReg-2's pick-phase growth. Defaults to
            1e-5.
        upper_limit_pick (float): GReg-2's penalty at the pick, below
            ``upper_limit``. Defaults to 1e-2.
        granularity_recover (float): GReg-2's penalty on the kept weights
            after the pick, <= 0. Defaults to -1e-4.
        mag_ratio_limit (float, optional): Magnitude ratio (> 1) that stops
            a layer's growth; None never stops early. Defaults to 1000.
        mag_ratio_momentum (float): Momentum of the ratio's average, in
            [0, 1). Defaults to 0.9.
        begin (int | float): Iteration of the first penalty update.
            Defaults to 0.
        exclude_coupled (bool): In ``'filter'`` mode, leave out the coupled
            layers. Defaults to True.
        **kwargs: The options of :class:`BaseSparsityHook` (``sparsity``,
            ``distribution``, ``exclude``, ...). ``init`` is not one: the
            model is dense until the prune. N:M patterns are not supported;
            ``'filter'`` mode takes ``'uniform'`` or ``'erk'``.

    Examples:
        >>> load_from = 'work_dirs/dense/iter_2000.pth'
        >>> custom_hooks = [dict(type='GRegHook', mode='filter', variant=2,
        >>>                      sparsity=0.5, granularity=2e-3,
        >>>                      stabilize=100)]
    """

    method_name = 'GReg'
    supports_nm = False
    run_fractions = dict(begin=1, stabilize=1)

    def __init__(self,
                 mode: str = 'unstructured',
                 variant: int = 1,
                 update_interval: int = 5,
                 granularity: float = 1e-4,
                 upper_limit: float = 1.0,
                 stabilize: int = 1000,
                 granularity_pick: float = 1e-5,
                 upper_limit_pick: float = 1e-2,
                 granularity_recover: float = -1e-4,
                 mag_ratio_limit: Optional[float] = 1000.0,
                 mag_ratio_momentum: float = 0.9,
                 begin: int = 0,
                 exclude_coupled: bool = True,
                 **kwargs) -> None:
        if 'init' in kwargs:
            raise GaPConfigError(
                f'GRegHook keeps the model dense until its prune, so it has '
                f'no init option, but got init={kwargs["init"]!r}')
        self.mode = check_mode(mode)
        if mag_ratio_limit is not None and (
                isinstance(mag_ratio_limit, bool)
                or not isinstance(mag_ratio_limit,
                                  (int, float)) or not mag_ratio_limit > 1):
            raise GaPConfigError(
                f'mag_ratio_limit must be a number > 1 (mean |kept| / mean '
                f'|picked|) or None, but got {mag_ratio_limit!r}')
        is_number = isinstance(
            mag_ratio_momentum,
            (int, float)) and not isinstance(mag_ratio_momentum, bool)
        if not is_number or not 0 <= mag_ratio_momentum < 1:
            raise GaPConfigError(f'mag_ratio_momentum must be in [0, 1), '
                                 f'but got {mag_ratio_momentum!r}')
        super().__init__(init='none', **kwargs)
        self.mag_ratio_limit = mag_ratio_limit
        self.mag_ratio_momentum = float(mag_ratio_momentum)
        self.exclude_coupled = exclude_coupled
        self.configure_schedule(
            dict(
                type='GRegSchedule',
                variant=variant,
                update_interval=update_interval,
                granularity=granularity,
                upper_limit=upper_limit,
                stabilize=stabilize,
                granularity_pick=granularity_pick,
                upper_limit_pick=upper_limit_pick,
                granularity_recover=granularity_recover,
                begin=begin))
        self.penalty: Optional[GrowingPenalty] = None
        self._stage = _PenaltyStage(self)
        self._wrapper = None
        self.coupled: Dict[str, str] = {}
        #: Filter mode: producer weight -> its channel's norm / bias params.
        self._followers: Dict[str, List[Tuple[str, nn.Parameter]]] = {}
        self._reset_state()

    def _reset_state(self) -> None:
        #: Picked sets (True = to prune) by layer; per weight or per filter.
        self.picked: Dict[str, torch.Tensor] = OrderedDict()
        self.pick_at: Optional[int] = None
        #: Growth updates each layer received.
        self.grown: Dict[str, int] = OrderedDict()
        #: The step at which each layer stopped growing.
        self.stopped_at: Dict[str, int] = OrderedDict()
        #: Momentum-averaged magnitude ratio of each layer.
        self.mag_ratio: Dict[str, float] = OrderedDict()
        self.pruned_at: Optional[int] = None
        #: After a filter-wise prune: param name -> (param, dead channels),
        #: the norm scales and shifts (biases) held at 0 with the filters.
        self.dead_channels: Dict[str, Tuple[nn.Parameter,
                                            torch.Tensor]] = OrderedDict()

    # ---------------------------------------------------------- set-up
    def describe_pattern(self) -> str:
        return 'whole filters' if self.mode == 'filter' else \
            super().describe_pattern()

    def select_params(self, model: torch.nn.Module):
        params = super().select_params(model)
        if self.mode != 'filter':
            return params
        if self.distribution == 'global':
            raise GaPConfigError(
                "GRegHook mode='filter' takes distribution 'uniform' or "
                "'erk' (a per-layer count of filters), not 'global'")
        # a filter is a slice along dim 0 of an (out, in, ...) weight of one
        # block: a transposed conv (out on dim 1) and an attention's packed
        # q, k, v projections are not pruned by filters
        unfit = OrderedDict(
            (n, 'filter-wise GReg prunes (out, in, ...) weights of one '
             'block: ' + ('a transposed conv has its output channels on '
                          'dim 1' if layout.out_dim else
                          'it holds the q, k and v projections'))
            for n, layout in params.layouts.items()
            if layout.out_dim != 0 or layout.blocks != 1)
        if unfit:
            print_log(
                f'GRegHook (filter-wise) leaves out {len(unfit)} layers it '
                f'cannot prune by output filter: ' +
                ', '.join(f'{n} ({why})' for n, why in unfit.items()),
                logger='current')
        self.coupled = {}
        if self.exclude_coupled:
            self.coupled = {
                n: why
                for n, why in coupled_filter_params(model).items()
                if n in params and n not in unfit
            }
        if self.coupled:
            print_log(
                f'GRegHook (filter-wise) leaves out {len(self.coupled)} '
                f'layers whose output channels are coupled: ' +
                ', '.join(f'{n} ({why})' for n, why in self.coupled.items()),
                logger='current')
        why = OrderedDict(unfit)
        why.update((n, f'its output channels are coupled ({w})')
                   for n, w in self.coupled.items())
        left = params.subset([n for n in params if n not in why], why)
        if not left:
            raise GaPConfigError(
                f'GRegHook (filter-wise): every prunable layer is coupled '
                f'({list(self.coupled)}); nothing can be pruned by filters')
        return left

    def before_run(self, runner) -> None:
        super().before_run(runner)
        self.penalty = GrowingPenalty(self.sparsifier.params, self.mode)
        if self.mode == 'filter':
            model = self.unwrap_model(runner)
            self._followers = OrderedDict(
                (n, f) for n, f in channel_followers(model).items()
                if n in self.sparsifier.params)

    def before_train(self, runner) -> None:
        self._wrapper = runner.optim_wrapper
        super().before_train(runner)

    def step_stage(self) -> StepStage:
        return self._stage

    def grad_scale(self) -> float:
        """The factor the gradients carry (the loss scale under AMP)."""
        return self._wrapper.grad_scale() if self._wrapper is not None \
            else 1.0

    # ----------------------------------------------------------- phases
    @property
    def phase(self) -> str:
        """``'pick'`` (GReg-2 before its pick), ``'grow'``, ``'stabilize'``
        (every layer stopped) or ``'finetune'`` (pruned)."""
        if self.pruned_at is not None:
            return 'finetune'
        if self.pick_at is None:
            return 'pick'
        if len(self.stopped_at) == len(self.sparsifier.names):
            return 'stabilize'
        return 'grow'

    def update(self, runner, step: int) -> None:
        """The penalty update, pick and prune that step ``step`` needs."""
        if self.pruned_at is not None:
            return
        sch = self.schedule
        u = sch.update_index(step)
        if u is not None:
            if sch.variant == 2 and u <= sch.num_pick:
                reg = sch.reg_pick(u)
                for name in self.sparsifier.names:
                    self.penalty.set_(name, None, reg, reg)
                if u == sch.num_pick:
                    self._pick(step)
            else:
                if sch.variant == 1 and u == 1:
                    self._pick(step)
                self._grow(step, sch.growth_index(u))
        if self.phase == 'stabilize' and step >= sch.prune_step_after(
                max(self.stopped_at.values())):
            self._prune(runner, step)

    def _pick(self, step: int) -> None:
        sp = self.sparsifier
        self.picked = pick_pruned(sp, sp.names, self.mode)
        full = [n for n, m in self.picked.items() if bool(m.all())]
        what = 'filters' if self.mode == 'filter' else 'weights'
        if full:
            raise GaPConfigError(
                f'GRegHook at sparsity {self.sparsity} ({self.mode}) would '
                f'prune all {what} of {full}; exclude these layers or give '
                f'them overrides')
        self.pick_at = step
        for name, picked in self.picked.items():
            if not picked.any():  # a layer at sparsity 0 has nothing to push
                self.stopped_at[name] = step
                self.penalty.set_(name, None, 0.0, 0.0)
        print_log(
            f'GReg at iteration {step}: picked '
            f'{sum(int(m.sum()) for m in self.picked.values())} of '
            f'{sum(m.numel() for m in self.picked.values())} {what} to '
            f'prune; pruning at iteration {self.schedule.prune_step()} '
            f'unless the magnitude ratios stop the growth earlier',
            logger='current')

    def _grow(self, step: int, k: int) -> None:
        sch = self.schedule
        if not 1 <= k <= sch.num_grow:
            return
        for name, picked in self.picked.items():
            if name in self.stopped_at:
                continue
            if self.mag_ratio_limit is not None:
                ratio = magnitude_ratio(self.sparsifier.params[name], picked,
                                        self.mode)
                old = self.mag_ratio.get(name)
                if old is not None and math.isfinite(ratio):
                    m = self.mag_ratio_momentum
                    ratio = old * m + ratio * (1 - m)
                self.mag_ratio[name] = ratio
                if ratio > self.mag_ratio_limit:
                    self.stopped_at[name] = step
                    continue
            self.grown[name] = k
            self.penalty.set_(name, picked, sch.reg_pruned(k), sch.reg_kept(k))
            if k == sch.num_grow:
                self.stopped_at[name] = step
        if self.phase == 'stabilize':
            last = max(self.stopped_at.values())
            print_log(
                f'GReg at iteration {step}: every layer has stopped growing '
                f'(the last at {last}); pruning at iteration '
                f'{self.schedule.prune_step_after(last)}',
                logger='current')

    def _prune(self, runner, step: int) -> None:
        sp = self.sparsifier
        masks = OrderedDict()
        for name, picked in self.picked.items():
            if picked.any():
                masks[name] = expand_filters(
                    picked,
                    sp.params[name].shape) if self.mode == 'filter' else picked
        newly_pruned, _ = sp.set_masks(masks)
        self.penalty.clear()
        self.pruned_at = step
        self.picked = OrderedDict()
        if self.mode == 'filter':
            self._remove_channels(runner.optim_wrapper.optimizer)
        self.apply_event(
            runner,
            step,
            pruned=newly_pruned,
            what=f'pruned the picked {self.mode} set after the penalty; '
            f'fine-tuning with fixed masks',
            event='prune',
            mode=self.mode)

    @torch.no_grad()
    def _remove_channels(self, optimizer=None) -> None:
        """Find the channels of the pruned filters and zero their norm
        scale and shift (or bias), with their optimizer state."""
        sp = self.sparsifier
        self.dead_channels = OrderedDict()
        outside = []
        for name in sp.names:
            pruned = sp.pruned_mask(name)
            if pruned is None:
                continue
            dead = pruned.reshape(pruned.shape[0], -1).all(dim=1)
            if not dead.any():
                continue
            if name not in self._followers:
                outside.append(name)
                continue
            for follower, param in self._followers[name]:
                dead_p = dead.to(param.device)
                param.masked_fill_(dead_p, 0)
                self.dead_channels[follower] = (param, dead_p)
        if optimizer is not None and self.dead_channels:
            zero_optimizer_state_(optimizer, {
                n: p
                for n, (p, _) in self.dead_channels.items()
            }, {
                n: d
                for n, (_, d) in self.dead_channels.items()
            })
        if optimizer is not None:
            print_log(
                f'GReg (filter-wise): removed the channels of the pruned '
                f'filters whole, zeroing {len(self.dead_channels)} norm '
                f'scales, shifts and biases with them' +
                (f'; outside the channel groups, {outside} keep their '
                 f'norm or bias constant in pruned channels'
                 if outside else ''),
                logger='current')

    def _update_scalars(self, runner) -> None:
        super()._update_scalars(runner)
        values = self.penalty.values.values() if self.penalty else ()
        runner.message_hub.update_scalar(
            'train/greg_reg', max((v[0] for v in values), default=0.0))

    # ------------------------------------------------------ checkpoints
    def method_state(self) -> Dict[str, Any]:
        return dict(
            mode=self.mode,
            picked={
                n: pack_mask(m)
                for n, m in self.picked.items()
            },
            pick_at=self.pick_at,
            grown=dict(self.grown),
            stopped_at=dict(self.stopped_at),
            mag_ratio=dict(self.mag_ratio),
            pruned_at=self.pruned_at,
            reg={
                n: list(v)
                for n, v in (self.penalty.values.items() if self.
                             penalty is not None else ())
            })

    def load_method_state(self, state: Mapping[str, Any]) -> None:
        if state.get('mode', self.mode) != self.mode:
            raise GaPConfigError(
                f'the checkpoint was written by GRegHook '
                f'mode={state["mode"]!r}, this run has mode={self.mode!r}')
        names = set(self.sparsifier.names)
        unknown = sorted(set(state.get('picked', {})) - names)
        if unknown:
            raise GaPConfigError(f'the checkpoint holds GReg sets of layers '
                                 f'that are not prunable here: {unknown}')
        self._reset_state()
        self.picked = OrderedDict((n, unpack_mask(state['picked'][n], n).to(
            self.sparsifier.params[n].device)) for n in self.sparsifier.names
                                  if n in state.get('picked', {}))
        self.pick_at = state.get('pick_at')
        self.grown.update(state.get('grown', {}))
        self.stopped_at.update(state.get('stopped_at', {}))
        self.mag_ratio.update(state.get('mag_ratio', {}))
        self.pruned_at = state.get('pruned_at')
        if self.mode == 'filter' and self.pruned_at is not None:
            self._remove_channels()
        self.penalty.clear()
        for name in self.sparsifier.names:
            value = state.get('reg', {}).get(name)
            if value is not None:
                self.penalty.set_(name, self.picked.get(name), *value)
