# Copyright (c) gap_mm contributors. All rights reserved.
"""Slimming: remove the channels a structured method switched off, so the
exported network is physically smaller and computes less.

One module for every structured method (filter-wise GReg's zero filters;
SCS's gates are first baked into zero filters by
:func:`bake_gates`). Pure torch: it reads the module structure and edits
parameters, and knows nothing of the Runner.

It removes channels of the channel groups of
:mod:`gap_mm.sparsity.channels` (inside residual blocks, RetinaNet's head
towers, a box head's shared FCs).

A channel is removed only where that leaves the network's function
unchanged in evaluation mode: its producer filter is all zero, so after the
norm layer and the activation the channel holds one constant ``a`` (the
activation of the producer's bias, or of the norm's shift in evaluation
mode). When ``a == 0`` the channel contributes nothing and goes. When
``a != 0`` and every consumer is a linear layer or a 1x1 conv without
padding, ``a`` times the consumer's weights is folded into the consumer's
bias, exactly, and the channel goes. Otherwise (a 3x3 consumer with zero
padding sees the constant only inside the image, not at its border) the
channel stays, and the plan says why. Group norm is left alone: removing a
channel changes its groups' statistics.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from gap_mm.errors import GaPConfigError
from gap_mm.sparsity.channels import ChannelGroup, find_channel_groups


@dataclass
class SlimPlan:
    """What :func:`plan_slimming` decided, group by group.

    Attributes:
        keep (dict[str, Tensor]): Producer -> indices of the channels kept
            (sorted), for every group that loses channels.
        fold (dict[str, Tensor]): Consumer -> what the removed constant
            channels add to its bias.
        rows (list[dict]): Per group: ``producer``, ``channels``,
            ``zero`` (all-zero filters), ``removed``, ``folded`` (removed
            with their constant folded into the consumers), ``kept_zero``
            (zero filters left in) and ``why_kept``.
        skipped (dict[str, str]): Producers left out of slimming, and why.
    """
    keep: Dict[str, torch.Tensor] = field(default_factory=OrderedDict)
    fold: Dict[str, torch.Tensor] = field(default_factory=OrderedDict)
    rows: List[dict] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=OrderedDict)

    @property
    def widths(self) -> Dict[str, int]:
        """Producer -> its number of channels after slimming."""
        return OrderedDict((n, int(k.numel())) for n, k in self.keep.items())


def _bn_constant(norm: _BatchNorm, value: torch.Tensor) -> torch.Tensor:
    """What an evaluation-mode batch norm makes of a constant input."""
    mean = norm.running_mean if norm.running_mean is not None else 0
    var = norm.running_var if norm.running_var is not None else 1
    out = (value - mean) / torch.sqrt(var + norm.eps)
    if norm.affine:
        out = out * norm.weight + norm.bias
    return out


def _one_by_one(module: nn.Module) -> bool:
    """A consumer into whose bias a constant input channel folds exactly."""
    if isinstance(module, nn.Linear):
        return True
    return (tuple(module.kernel_size) == (1, 1)
            and tuple(module.padding) == (0, 0)
            and module.padding_mode == 'zeros')


@torch.no_grad()
def plan_slimming(model: nn.Module) -> SlimPlan:
    """Decide, from the weights, which channels of ``model`` to remove.

    Args:
        model (nn.Module): The trained model (batch norms read in
            evaluation mode: their running statistics).

    Returns:
        SlimPlan: What to remove and fold; apply it with
        :func:`apply_slimming`.
    """
    modules = dict(model.named_modules())
    groups, skipped = find_channel_groups(model)
    plan = SlimPlan(skipped=skipped)
    biases: Dict[str, torch.Tensor] = {}  # consumers' biases with folds
    for group in groups:
        producer = modules[group.producer]
        norm = modules.get(group.norm) if group.norm else None
        weight = producer.weight.detach()
        n = weight.shape[0]
        row = dict(
            producer=group.producer,
            channels=n,
            zero=0,
            removed=0,
            folded=0,
            kept_zero=0,
            why_kept='')
        plan.rows.append(row)
        if norm is not None and not isinstance(norm, _BatchNorm):
            row['why_kept'] = (f'{type(norm).__name__} after it: removing a '
                               f'channel changes its statistics')
            continue
        zero = (weight.reshape(n, -1) == 0).all(dim=1)
        row['zero'] = int(zero.sum())
        if not zero.any():
            continue
        bias = biases.get(group.producer)
        if bias is None:
            bias = producer.bias.detach() if producer.bias is not None \
                else weight.new_zeros(n)
        const = bias
        if norm is not None:
            const = _bn_constant(norm, const)
        if group.act is not None:
            const = group.act(const)
        silent = zero & (const == 0)
        constant = zero & (const != 0)
        foldable = all(_one_by_one(modules[c]) for c in group.consumers)
        remove = silent | constant if foldable else silent
        if bool(remove.all()):  # keep one channel: a layer needs a width
            remove = remove.clone()
            remove[int(remove.nonzero()[0])] = False
        if foldable and bool((constant & remove).any()):
            idx = (constant & remove).nonzero().flatten()
            for name in group.consumers:
                cw = modules[name].weight.detach()
                add = (
                    cw[:, idx].reshape(cw.shape[0], idx.numel(), -1).sum(2) *
                    const[idx]).sum(1)
                base = biases.get(name)
                if base is None:
                    base = modules[name].bias.detach(
                    ) if modules[name].bias is not None else cw.new_zeros(
                        cw.shape[0])
                biases[name] = base + add
                plan.fold[name] = plan.fold.get(name, 0) + add
        row['removed'] = int(remove.sum())
        row['folded'] = int((constant & remove).sum())
        row['kept_zero'] = int((zero & ~remove).sum())
        if row['kept_zero']:
            kernel = 'x'.join(
                map(str, getattr(modules[group.consumers[0]], 'kernel_size',
                                 ())))
            row['why_kept'] = (
                f'their constant output reaches a zero-padded {kernel} conv '
                f'({", ".join(group.consumers)})'
                if not foldable else 'a layer keeps at least one channel')
        if remove.any():
            plan.keep[group.producer] = (~remove).nonzero().flatten()
    return plan


def _set_param(module: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    setattr(module, name,
            nn.Parameter(value.contiguous(), requires_grad=old.requires_grad))


def _slice_out(module: nn.Module, keep: torch.Tensor) -> None:
    _set_param(module, 'weight', module.weight.detach()[keep])
    if module.bias is not None:
        _set_param(module, 'bias', module.bias.detach()[keep])
    if isinstance(module, nn.Linear):
        module.out_features = int(keep.numel())
    else:
        module.out_channels = int(keep.numel())


def _slice_in(module: nn.Module, keep: torch.Tensor) -> None:
    _set_param(module, 'weight', module.weight.detach()[:, keep])
    if isinstance(module, nn.Linear):
        module.in_features = int(keep.numel())
    else:
        module.in_channels = int(keep.numel())


def _slice_norm(norm: _BatchNorm, keep: torch.Tensor) -> None:
    if norm.affine:
        _set_param(norm, 'weight', norm.weight.detach()[keep])
        _set_param(norm, 'bias', norm.bias.detach()[keep])
    for buf in ('running_mean', 'running_var'):
        if getattr(norm, buf, None) is not None:
            setattr(norm, buf, getattr(norm, buf)[keep].contiguous())
    norm.num_features = int(keep.numel())


def _group_index(model: nn.Module) -> Dict[str, ChannelGroup]:
    return OrderedDict((g.producer, g) for g in find_channel_groups(model)[0])


def _check_names(names, valid: Mapping, what: str) -> None:
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise GaPConfigError(
            f'{what} names {unknown}, which are not slimmable channel '
            f'groups of this model; valid producers are {list(valid)}')


@torch.no_grad()
def apply_slimming(model: nn.Module, plan: SlimPlan) -> nn.Module:
    """Remove the channels of ``plan`` from ``model``, in place, and fold
    the removed constants into the consumers' biases.

    Returns:
        nn.Module: ``model``, smaller.
    """
    modules = dict(model.named_modules())
    index = _group_index(model)
    _check_names(plan.keep, index, 'the slimming plan')
    for name, add in plan.fold.items():
        module = modules[name]
        if module.bias is None:
            module.bias = nn.Parameter(
                add.clone(), requires_grad=module.weight.requires_grad)
        else:
            _set_param(module, 'bias', module.bias.detach() + add)
    for producer, keep in plan.keep.items():
        group = index[producer]
        _slice_out(modules[producer], keep)
        if group.norm:
            _slice_norm(modules[group.norm], keep)
        for consumer in group.consumers:
            _slice_in(modules[consumer], keep)
    return model


def remove_blocks(model: nn.Module, blocks: Sequence[str]) -> nn.Module:
    """Replace each residual block of ``blocks`` by ``nn.Identity`` (a
    block whose branch is off computes ``relu(x) = x``).

    Raises:
        GaPConfigError: If a name is no block without a downsample.
    """
    modules = dict(model.named_modules())
    for name in blocks:
        block = modules.get(name)
        names = [c.__name__ for c in type(block).__mro__] if block else []
        if not ({'BasicBlock', 'Bottleneck'} & set(names)) or getattr(
                block, 'downsample', None) is not None:
            raise GaPConfigError(
                f'removed_blocks names {name!r}, which is not a residual '
                f'block without a downsample of this model')
        parent_name, _, attr = name.rpartition('.')
        setattr(modules[parent_name] if parent_name else model, attr,
                nn.Identity())
    return model


@torch.no_grad()
def bake_gates(architecture: nn.Module, gates) -> List[str]:
    """Turn the hard structure of SCS gates (``1[s > 0]``) into the
    weights of ``architecture`` and remove the gates' hooks: an off
    channel's filter and its norm scale and shift (or bias) become 0, so
    the channel is exactly 0 after the ReLU and :func:`plan_slimming`
    removes it; an off block is replaced by ``nn.Identity``. A norm
    without affine parameters gets its running mean set to 0 there
    instead (a zero input then normalizes to 0 in evaluation, as the gate
    made it).

    Returns:
        list[str]: The removed blocks.
    """
    from gap_mm.sparsity.channels import channel_followers
    modules = dict(architecture.named_modules())
    followers = channel_followers(architecture)
    hard = gates.hard_state()
    gates.detach()
    for producer in gates.channel_sites:
        off = ~hard[producer]
        if not off.any():
            continue
        module = modules[producer]
        module.weight[off] = 0
        if module.bias is not None:
            module.bias[off] = 0
        for _, param in followers.get(producer + '.weight', ()):
            param[off] = 0
        norm = modules[gates.channel_sites[producer][0]]
        if norm is not module and getattr(norm, 'weight', None) is None \
                and getattr(norm, 'running_mean', None) is not None:
            norm.running_mean[off] = 0
    removed = [b for b in gates.block_sites if not bool(hard[b].any())]
    remove_blocks(architecture, removed)
    return removed


@torch.no_grad()
def resize_to(
    model: nn.Module,
    widths: Mapping[str, int],
    biased: Tuple[str, ...] = (),
    removed_blocks: Sequence[str] = ()
) -> nn.Module:
    """Give ``model`` the shapes of a slimmed model (its weights are then
    loaded from the slimmed checkpoint): ``removed_blocks`` replaced by
    ``nn.Identity``, ``widths`` channels in each producer, and a bias in
    each of ``biased`` (the consumers a fold gave one).

    Raises:
        GaPConfigError: If a name is no channel group, consumer or block,
            or a width is not in ``[1, channels]``.
    """
    remove_blocks(model, removed_blocks)
    modules = dict(model.named_modules())
    index = _group_index(model)
    _check_names(widths, index, 'SlimModel channels')
    for producer, width in widths.items():
        full = modules[producer].weight.shape[0]
        if not isinstance(width, int) or not 1 <= width <= full:
            raise GaPConfigError(
                f'SlimModel channels[{producer!r}] = {width!r}; it must be '
                f'an int in [1, {full}] (the layer has {full} channels)')
    consumers = {c for g in index.values() for c in g.consumers}
    _check_names(biased, consumers, 'SlimModel biased')
    for name in biased:
        module = modules[name]
        if module.bias is None:
            module.bias = nn.Parameter(
                module.weight.new_zeros(module.weight.shape[0]))
    plan = SlimPlan(
        keep=OrderedDict((p, torch.arange(w)) for p, w in widths.items()))
    return apply_slimming(model, plan)


def count_params(model: nn.Module) -> int:
    """Number of parameter elements."""
    return sum(p.numel() for p in model.parameters())
