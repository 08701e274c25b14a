# Copyright (c) gap_mm contributors. All rights reserved.
"""The gate modules of SCS: :class:`Gate` (the logits of one layer's
channels or of one block) and :class:`GateSet` (a model's gates, applied by
forward hooks), and the check of a growing mode's seed."""
import math
import weakref
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from gap_mm.errors import GaPConfigError
from ..channels import _class_names, _join, find_channel_groups


def _key(name: str) -> str:
    """A module name as a ModuleDict key (no dots)."""
    return name.replace('.', '__')


class Gate(nn.Module):
    """The gates of one layer's channels (or of one block: ``size=1``).

    Args:
        size (int): Number of gates.
        init (float): Initial logit of every gate. Defaults to 1.0 (on).
        num_on (int, optional): Start the first ``num_on`` gates at
            ``|init|`` (on) and the others at ``off`` : a seed width to grow
            from. Defaults to None (every gate at ``init``).
        off (float, optional): With ``num_on``, the logit of the others,
            < 0. Defaults to ``-|init|``.
    """

    def __init__(self,
                 size: int,
                 init: float = 1.0,
                 num_on: Optional[int] = None,
                 off: Optional[float] = None) -> None:
        super().__init__()
        logits = torch.full((size, ), float(init))
        if num_on is not None:
            logits.fill_(-abs(float(init)) if off is None else float(off))
            logits[:num_on] = abs(float(init))
        self.logits = nn.Parameter(logits)
        self.register_buffer('sample', torch.ones(size), persistent=False)

    def probs(self, beta: float) -> torch.Tensor:
        """``sigmoid(beta * s)``: the probability each gate is on."""
        return torch.sigmoid(beta * self.logits)

    def hard(self) -> torch.Tensor:
        """``1[s > 0]``, the gates of evaluation and of the frozen
        structure."""
        return (self.logits.detach() > 0).to(self.logits.dtype)

    def value(self, beta: float, stochastic: bool) -> torch.Tensor:
        """The multiplier the layer's channels get."""
        if not stochastic:
            return self.hard()
        return self.sample * self.probs(beta)

    def extra_repr(self) -> str:
        return f'size={self.logits.numel()}'


def check_seed(seed_width,
               seed_off,
               init,
               names: Tuple[str, str, str] = ('seed_width', 'seed_off',
                                              'init'),
               owner: str = '') -> None:
    """Check a growing mode's start: ``seed_width`` None or in (0, 1),
    with ``init`` != 0 (the seed's logit is ``|init|``); ``seed_off`` None
    or a number < 0, and only with ``seed_width``. The messages call the
    three by ``names`` (the caller's option names), after ``owner``.

    Raises:
        GaPConfigError: Naming the bad value and what is valid.
    """
    width, off, start = names

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if seed_width is not None and not (number(seed_width)
                                       and 0 < seed_width < 1):
        raise GaPConfigError(
            f'{owner}{width} must be in (0, 1) (the fraction of each gated '
            f'layer\'s channels that starts on) or None, got {seed_width!r}')
    if seed_off is not None and (seed_width is None or not number(seed_off)
                                 or not seed_off < 0):
        raise GaPConfigError(
            f'{owner}{off} must be a number < 0 and goes with {width} (the '
            f'start of the channels outside the seed), got {off}='
            f'{seed_off!r} with {width}={seed_width!r}')
    if seed_width is not None and not init:
        raise GaPConfigError(
            f'{owner}{width} needs {start} != 0: the seed channels start at '
            f'|{start}|, the others at -|{start}|')


class GateSet(nn.Module):
    """The channel and block gates of a model, applied by forward hooks.

    Build it from the model it gates with :meth:`from_model`, keep it as a
    submodule of the model (its logits must be model parameters before the
    optimizer is built), and drive it with :meth:`set_beta`,
    :meth:`resample` and :meth:`freeze`.

    Args:
        channels (Mapping[str, tuple]): Producer -> ``(module to hook,
            number of channels)``.
        blocks (Mapping[str, str]): Block -> the module whose output is its
            residual branch (its last norm layer).
        init (float): Initial logit. Defaults to 1.0.
        seed_width (float, optional): Growing from a seed: in every gated
            layer the first ``ceil(seed_width * channels)`` channel gates
            start on (logit ``|init|``), the others off (``seed_off``); the
            block gates start on. Defaults to None (every gate at
            ``init``).
        seed_off (float, optional): With ``seed_width``, the logit of the
            channels outside the seed, < 0. Defaults to ``-|init|``.
    """

    def __init__(self,
                 channels: Mapping[str, Tuple[str, int]],
                 blocks: Mapping[str, str],
                 init: float = 1.0,
                 seed_width: Optional[float] = None,
                 seed_off: Optional[float] = None) -> None:
        super().__init__()
        check_seed(seed_width, seed_off, init)
        self.channel_sites = OrderedDict(channels)
        self.block_sites = OrderedDict(blocks)

        def seed(n: int) -> Optional[int]:
            # round first: 0.07 * 100 is 7.000000000000001 in floats
            return None if seed_width is None else max(
                1, math.ceil(round(seed_width * n, 9)))

        self.channel_gates = nn.ModuleDict(
            (_key(p), Gate(n, init, seed(n), seed_off))
            for p, (_, n) in channels.items())
        self.block_gates = nn.ModuleDict(
            (_key(b), Gate(1, abs(init) if seed_width is not None else init))
            for b in blocks)
        self.beta = 1.0
        self.stochastic = True  # training and not frozen
        self.frozen = False
        #: Before gating begins: hard gates and no penalty.
        self.warmup = False
        self._handles: List = []

    @classmethod
    def from_model(cls,
                   model: nn.Module,
                   channels: bool = True,
                   blocks: bool = True,
                   exclude: Tuple[str, ...] = (),
                   init: float = 1.0,
                   only: Tuple[str, ...] = (),
                   seed_width: Optional[float] = None,
                   seed_off: Optional[float] = None) -> 'GateSet':
        """Gates for every channel group (``channels``) and skippable
        residual block (``blocks``) of ``model``, except the producers and
        blocks whose names start with one of ``exclude``; with ``only``,
        just those whose names start with one of its prefixes.

        Raises:
            GaPConfigError: If a prefix of ``only`` matches no gate site:
                the message says why the layers under it cannot be gated
                (channels tied by a residual sum or by FPN levels, or no
                conv-norm-ReLU chain).
        """
        exclude, only = tuple(exclude), tuple(only)

        def wanted(name: str) -> bool:
            return not (exclude and name.startswith(exclude)) and (
                not only or name.startswith(only))

        modules = dict(model.named_modules())
        sites = OrderedDict()
        groups, skipped = find_channel_groups(model)
        if channels:
            for group in groups:
                if not wanted(group.producer):
                    continue
                where = group.norm or group.producer
                sites[group.producer] = (
                    where, modules[group.producer].weight.shape[0])
        block_sites = OrderedDict()
        if blocks:
            for name, module in modules.items():
                last = _branch_end(module)
                if last and wanted(name):
                    block_sites[name] = _join(name, last)
        for prefix in only:
            if any(n.startswith(prefix) for n in (*sites, *block_sites)):
                continue
            left_out = [
                n for n in (*(g.producer for g in groups), *(
                    n for n, m in modules.items() if _branch_end(m)))
                if n.startswith(prefix)
            ]
            if left_out:
                why = (f'{left_out[0]} can be gated but is left out by '
                       f'exclude={list(exclude)}, gate_channels='
                       f'{channels} or gate_blocks={blocks}')
            else:
                why = _why_not_gated(model, prefix, skipped)
            raise GaPConfigError(f'SCS cannot gate {prefix!r}: {why}')
        if not sites and not block_sites:
            raise GaPConfigError(
                f'{type(model).__name__} has no channel group or skippable '
                f'residual block to gate (gap_mm.sparsity.channels lists '
                f'what can be gated)')
        return cls(sites, block_sites, init, seed_width, seed_off)

    # ------------------------------------------------------------ hooks
    def attach(self, model: nn.Module) -> None:
        """Register the forward hooks on ``model`` (the one it was built
        from)."""
        self.detach()
        modules = dict(model.named_modules())
        for producer, (where, _) in self.channel_sites.items():
            gate = self.channel_gates[_key(producer)]
            self._handles.append(modules[where].register_forward_hook(
                self._hook(gate)))
        for block, where in self.block_sites.items():
            gate = self.block_gates[_key(block)]
            self._handles.append(modules[where].register_forward_hook(
                self._hook(gate)))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, gate: Gate):

        def multiply(module, args, output):
            # the gate set's own mode (its owner model's), not the hooked
            # module's: mmdet's norm_eval keeps frozen norms in eval mode
            # while the detector trains
            g = gate.value(self.beta, self.stochastic and self.training)
            shape = (1, -1) + (1, ) * (output.dim() - 2)
            return output * g.to(output.dtype).view(shape)

        return multiply

    # ---------------------------------------------------------- driving
    def gates(self) -> Dict[str, Gate]:
        """Every gate by its layer or block name."""
        out = OrderedDict(
            (p, self.channel_gates[_key(p)]) for p in self.channel_sites)
        out.update((b, self.block_gates[_key(b)]) for b in self.block_sites)
        return out

    def set_beta(self, beta: float) -> None:
        if not beta > 0:
            raise GaPConfigError(f'the gate temperature beta must be > 0, '
                                 f'got {beta!r}')
        self.beta = float(beta)

    @torch.no_grad()
    def resample(self, seed: int, step: int) -> None:
        """Draw ``q ~ Bernoulli(sigmoid(beta * s))`` for every gate from a
        generator seeded by ``(seed, step)``: the same on every rank."""
        gen = torch.Generator().manual_seed(
            (int(seed) * 1_000_003 + int(step)) % (2**63))
        for gate in self.gates().values():
            p = gate.probs(self.beta).detach().cpu()
            gate.sample.copy_(torch.bernoulli(p, generator=gen))

    @torch.no_grad()
    def silence_off_channels_(
        self, model: nn.Module
    ) -> Dict[str, Tuple[nn.Parameter, torch.Tensor]]:
        """Make every channel whose gate is off count for nothing while it
        stays trainable: zero the input slice of that channel in each of
        its consumers' weights. Growing mode calls it when gating begins: a
        channel off through the warm-up got no gradient (its gate was 0),
        so without this a draw that switches it on would add the features
        of untrained weights to the next layer. Silenced this way the
        network computes the same function whatever the draws of those
        gates, and a drawn-on channel still puts out its (non-zero)
        features, so the consumers' slices get a gradient at once and the
        channel, its norm and its logit learn from the task from the next
        step, like a weight regrown at 0. (Zeroing the channel's own output
        instead, its norm's scale and shift, would leave it at exactly 0
        before the ReLU, whose gradient there is 0: the channel could never
        learn.)

        Returns:
            dict: Consumer weight name -> ``(weight, mask)``: the parameter
            and the bool mask (its shape) of the positions zeroed; the
            optimizer state there must be zeroed too.
        """
        modules = dict(model.named_modules())
        groups = {g.producer: g for g in find_channel_groups(model)[0]}
        changed: Dict[str, Tuple[nn.Parameter, torch.Tensor]] = OrderedDict()
        for producer in self.channel_sites:
            off = self.channel_gates[_key(producer)].hard() == 0
            if not bool(off.any()):
                continue
            for consumer in groups[producer].consumers:
                weight = modules[consumer].weight
                if weight.shape[1] != off.numel():
                    raise GaPConfigError(
                        f'cannot silence the channels of {producer}: its '
                        f'consumer {consumer} reads {weight.shape[1]} input '
                        f'channels, not its {off.numel()}')
                mask = off.to(weight.device).view(
                    1, -1, *(1, ) * (weight.dim() - 2)).expand_as(weight)
                weight.masked_fill_(mask, 0)
                name = _join(consumer, 'weight')
                if name in changed:  # a layer reading two gated producers
                    mask = mask | changed[name][1]
                changed[name] = (weight, mask)
        return changed

    def frozen_consumers(self, model: nn.Module) -> List[str]:
        """The layers that read a gated channel but whose weight is not
        trained (``requires_grad=False``, such as mmdet's ``frozen_stages``):
        :meth:`silence_off_channels_` would zero their slices for good."""
        modules = dict(model.named_modules())
        groups = {g.producer: g for g in find_channel_groups(model)[0]}
        return sorted({
            consumer
            for producer in self.channel_sites
            for consumer in groups[producer].consumers
            if not modules[consumer].weight.requires_grad
        })

    def off_channel_slices(
            self,
            model: nn.Module) -> Dict[str, Tuple[nn.Parameter, torch.Tensor]]:
        """The parameters of the channels whose gate is off: their rows of
        the producer's weight and bias, and their entries of the norm's
        weight and bias. Growing mode restarts their optimizer state when
        gating begins, since they had no gradient through the warm-up.

        Returns:
            dict: Parameter name -> ``(parameter, mask)``, the mask True at
            the off channels' positions (the parameter's shape).
        """
        modules = dict(model.named_modules())
        groups = {g.producer: g for g in find_channel_groups(model)[0]}
        slices: Dict[str, Tuple[nn.Parameter, torch.Tensor]] = OrderedDict()
        for producer in self.channel_sites:
            off = self.channel_gates[_key(producer)].hard() == 0
            if not bool(off.any()):
                continue
            for owner in (producer, groups[producer].norm):
                module = modules.get(owner) if owner else None
                for attr in ('weight', 'bias'):
                    param = getattr(module, attr, None)
                    if not isinstance(param, nn.Parameter):
                        continue
                    mask = off.to(param.device).view(
                        -1, *(1, ) * (param.dim() - 1)).expand_as(param)
                    slices[_join(owner, attr)] = (param, mask)
        return slices

    def freeze(self) -> None:
        """Fix the structure: gates ``1[s > 0]`` from now on, logits no
        longer trained."""
        self.frozen = True
        self.stochastic = False
        for gate in self.gates().values():
            gate.logits.requires_grad_(False)

    def scaled_layers(self, model: nn.Module) -> Dict[str, List[str]]:
        """Gate -> the modules whose FLOPs it scales: a channel gate its
        producer, the producer's norm and the consumers; a block gate every
        leaf module of the block. Found once per model (the structure does
        not change while it trains) and kept, since :func:`gated_flops`
        runs several times an iteration."""
        cached = getattr(self, '_scaled_layers', None)
        if cached is not None and cached[0]() is model:
            return cached[1]
        groups = {g.producer: g for g in find_channel_groups(model)[0]}
        out: Dict[str, List[str]] = OrderedDict()
        for producer in self.channel_sites:
            group = groups[producer]
            out[producer] = [producer] + ([group.norm] if group.norm else
                                          []) + list(group.consumers)
        for block in self.block_sites:
            prefix = block + '.'
            out[block] = [
                name for name, module in model.named_modules()
                if name.startswith(prefix) and not any(True for _ in
                                                       module.children())
            ]
        self._scaled_layers = (weakref.ref(model), out)
        return out

    @torch.no_grad()
    def impose_(self, structure: Mapping[str, torch.Tensor],
                threshold: float) -> None:
        """Make ``1[s > 0]`` the on/off ``structure`` (gate name -> bool),
        a structure of :func:`landing_structure`: every logit is shifted
        by its ``threshold`` (for float logits ``s > t`` if and only if
        ``s - t > 0``; the order stays, though logits far below the
        threshold may round together), and a gate the structure keeps on
        below it (a layer's protected top channel) is set to the smallest
        positive normal float32 (no logit lies between 0 and it, which
        keeps a second landing a no-op)."""
        tiny = torch.finfo(torch.float32).tiny
        for name, gate in self.gates().items():
            gate.logits.sub_(threshold)
            lift = structure[name].to(gate.logits.device) & (gate.logits <= 0)
            gate.logits[lift] = tiny

    def hard_state(self) -> Dict[str, torch.Tensor]:
        """The on/off structure (bool per gate) by layer or block."""
        return OrderedDict(
            (n, g.logits.detach() > 0) for n, g in self.gates().items())


def _why_not_gated(model: nn.Module, prefix: str,
                   skipped: Mapping[str, str]) -> str:
    """Why no gate site starts with ``prefix``."""
    from ..coupling import coupled_filter_params
    for name, why in skipped.items():
        if name.startswith(prefix):
            return f'{name}: {why}'
    for name, why in coupled_filter_params(model).items():
        if name.startswith(prefix):
            return (f'the channels of {name.rsplit(".", 1)[0]} are tied by '
                    f'{why}: removing one would need it removed from every '
                    f'tensor of the sum, so it is never gated')
    if not any(n.startswith(prefix) for n, _ in model.named_modules()):
        return 'the model has no module of that name'
    return ('it holds no channel group (a conv-norm-ReLU chain whose '
            'channels one next layer alone reads, see gap_mm.sparsity.'
            'channels) and no residual block without a downsample')


def _branch_end(module: nn.Module) -> Optional[str]:
    """The attribute of a residual block's last norm layer, when the block
    has no downsample and no plugin after its last conv (so it can be
    skipped: a plugin such as a context block would turn a gated-off
    branch into a non-zero one); else None."""
    names = _class_names(module)
    if 'BasicBlock' in names:
        idx = 2
    elif 'Bottleneck' in names:
        idx = 3
    else:
        return None
    if getattr(module, 'downsample', None) is not None or getattr(
            module, 'after_conv3_plugin_names', None):
        return None
    attr = getattr(module, f'norm{idx}_name', None) or f'bn{idx}'
    return attr if isinstance(getattr(module, attr, None), nn.Module) \
        else None
