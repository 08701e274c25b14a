# Copyright (c) gap_mm contributors. All rights reserved.
"""GReg's growing L2 penalty (Wang et al., ICLR 2021): pure torch.

The penalty enters the gradient after backward, ``grad += reg * w``, with
``reg`` per weight (``'unstructured'``) or per output filter (``'filter'``,
``reg[j]`` broadcast over filter ``j``). Within a layer ``reg`` takes two
values, one on the picked (to-be-pruned) set and one on the kept weights,
so :class:`GrowingPenalty` keeps both numbers and materialises the tensor
only when they change; the per-step update is one
``torch._foreach_addcmul_`` over every penalised layer.
"""
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from gap_mm.errors import GaPConfigError
from .sparsifier import Sparsifier
from .topk import num_kept, topk_masks

#: What a penalty and a prune act on: single weights or output filters.
MODES = ('unstructured', 'filter')


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise GaPConfigError(f'mode must be one of {MODES}, but got {mode!r}')
    return mode


def filter_scores(score: torch.Tensor) -> torch.Tensor:
    """Per-output-filter mean of a weight-shaped score (dim 0 is the
    output)."""
    return score.reshape(score.shape[0], -1).mean(1)


def filter_view_shape(shape: Sequence[int]) -> Tuple[int, ...]:
    """The shape ``(out, 1, ..., 1)`` that broadcasts a per-filter value
    over a weight of ``shape``."""
    return (int(shape[0]), ) + (1, ) * (len(shape) - 1)


def expand_filters(pruned: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A per-filter bool mask ``(out,)`` as a weight-shaped mask."""
    return pruned.view(filter_view_shape(shape)).expand(
        tuple(shape)).contiguous()


def layer_sparsity(sparsifier: Sparsifier, name: str) -> float:
    """The target sparsity of layer ``name``: its override, the overall
    sparsity for ``'uniform'``, else (ERK) ``1 - keep / numel`` of the
    distribution's target."""
    if name in sparsifier.overrides:
        return sparsifier.overrides[name]
    if sparsifier.distribution == 'uniform':
        return sparsifier.sparsity
    numel = sparsifier.params[name].numel()
    return 1.0 - sparsifier.num_keep[name] / numel


@torch.no_grad()
def pick_pruned(sparsifier: Sparsifier, names: Sequence[str],
                mode: str) -> Dict[str, torch.Tensor]:
    """The set each layer of ``names`` will prune, by the sparsifier's
    score (``|w|`` by default), without pruning it.

    ``'unstructured'``: the weights :meth:`Sparsifier.prune` would prune
    (the distribution's exact counts and tie-break). ``'filter'``: the
    ``round(s_l * out)`` output filters of smallest mean score, ``s_l``
    the layer's target (:func:`layer_sparsity`), ties broken by index.

    Returns:
        dict[str, Tensor]: Bool masks, True = picked for pruning; shaped
        like the weight (unstructured) or ``(out,)`` (filter).
    """
    check_mode(mode)
    if mode == 'unstructured':
        return sparsifier.select_pruned(names)
    picked: Dict[str, torch.Tensor] = OrderedDict()
    for name in names:
        param = sparsifier.params[name]
        scores = filter_scores(sparsifier.score(name, param))
        keep = num_kept(scores.numel(), layer_sparsity(sparsifier, name))
        picked[name] = topk_masks([scores], keep, pruned=True)[0]
    return picked


@torch.no_grad()
def magnitude_ratio(weight: torch.Tensor, picked: torch.Tensor,
                    mode: str) -> float:
    """``mean |kept| / mean |picked|`` of one layer (per filter: of the
    filters' mean ``|w|``); ``inf`` when nothing is picked or the picked
    weights are all 0."""
    mag = weight.detach().abs()
    if mode == 'filter':
        mag = filter_scores(mag)
    n_picked = int(picked.sum())
    n_kept = picked.numel() - n_picked
    if n_picked == 0 or n_kept == 0:
        return float('inf')
    picked_sum = float(mag[picked].sum())
    if picked_sum == 0:
        return float('inf')
    kept_mean = float(mag[~picked].sum()) / n_kept
    return kept_mean / (picked_sum / n_picked)


class GrowingPenalty:
    """The per-layer penalty tensors and their fused gradient update.

    Each layer's ``reg`` is ``pruned_value`` on the picked set and
    ``kept_value`` elsewhere (or one value everywhere before a set is
    picked). Float tensors in the weight's dtype and device, shaped like
    the weight (unstructured) or ``(out, 1, ..., 1)`` (filter): 4 bytes per
    penalised weight, or per filter, until :meth:`clear`.

    Args:
        params (Mapping[str, nn.Parameter]): The penalised weights by name.
        mode (str): ``'unstructured'`` or ``'filter'``.
    """

    def __init__(self, params: Mapping[str, nn.Parameter], mode: str) -> None:
        self.params: Dict[str, nn.Parameter] = OrderedDict(params)
        self.mode = check_mode(mode)
        self.regs: Dict[str, torch.Tensor] = OrderedDict()
        #: ``name -> (pruned_value, kept_value)`` of the tensors in
        #: :attr:`regs`.
        self.values: Dict[str, Tuple[float, float]] = OrderedDict()

    def _shape(self, name: str) -> Tuple[int, ...]:
        shape = tuple(self.params[name].shape)
        return shape if self.mode == 'unstructured' else filter_view_shape(
            shape)

    @torch.no_grad()
    def set_(self, name: str, picked: Optional[torch.Tensor],
             pruned_value: float, kept_value: float) -> None:
        """Set layer ``name``'s penalty: ``pruned_value`` where ``picked``
        (every weight when ``picked`` is None), ``kept_value`` elsewhere.
        All-zero penalties hold no tensor."""
        if picked is None:
            kept_value = pruned_value
        if self.values.get(name) == (pruned_value, kept_value):
            return
        if pruned_value == 0 and kept_value == 0:
            self.regs.pop(name, None)
            self.values.pop(name, None)
            return
        reg = self.regs.get(name)
        if reg is None:
            param = self.params[name]
            reg = torch.empty(
                self._shape(name), dtype=param.dtype, device=param.device)
        reg.fill_(kept_value)
        if picked is not None:
            reg.masked_fill_(
                picked.to(reg.device).view(reg.shape), pruned_value)
        self.regs[name] = reg
        self.values[name] = (float(pruned_value), float(kept_value))

    @torch.no_grad()
    def apply_(self, scale: float = 1.0) -> int:
        """``grad += scale * reg * w`` for every penalised weight that has a
        gradient, in one fused call; returns the number of layers."""
        grads: List[torch.Tensor] = []
        regs: List[torch.Tensor] = []
        weights: List[torch.Tensor] = []
        for name, reg in self.regs.items():
            param = self.params[name]
            if param.grad is None:
                continue
            grads.append(param.grad)
            regs.append(reg)
            weights.append(param.detach())
        if grads:
            torch._foreach_addcmul_(grads, regs, weights, value=scale)
        return len(grads)

    def clear(self) -> None:
        """Drop every penalty (after the prune)."""
        self.regs.clear()
        self.values.clear()
