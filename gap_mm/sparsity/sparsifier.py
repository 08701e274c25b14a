# Copyright (c) gap_mm contributors. All rights reserved.
"""The masks of a sparse network and the operations methods perform on
them."""
import hashlib
import re
import warnings
from collections import OrderedDict
from typing import (Callable, Dict, Iterable, List, Mapping, Optional,
                    Sequence, Set, Tuple, Union)

import numpy as np
import torch
from torch import nn

from gap_mm.errors import GaPConfigError
from gap_mm.registry import SPARSIFIERS
from .distribution import (DISTRIBUTIONS, check_sparsity, erk_keep,
                           match_overrides, uniform_keep)
from .drop_grow import drop_grow_positions, num_to_move
from .masks import (keep_of, keep_word, num_pruned, pruned_of,
                    zero_pruned_)
from .optim_state import (init_regrown_state_, reset_optimizer_state_,
                          zero_optimizer_state_)
from .packing import pack_mask, unpack_mask
from .partition import PartitionSpec, build_partitions
from .scores import MagnitudeScore, Score, build_score
from .selection import PLAIN_LAYOUT, WeightLayout
from .topk import flat_nonzero, nm_mask, topk_masks

_NM_RE = re.compile(r'^\s*(\d+)\s*:\s*(\d+)\s*$')


def parse_pattern(
        pattern: Union[str, Tuple[int, int],
                       None]) -> Optional[Tuple[int, int]]:
    """``'unstructured'`` → None; ``'2:4'`` or ``(2, 4)`` → ``(2, 4)``."""
    if pattern in (None, 'unstructured'):
        return None
    if isinstance(pattern, str):
        match = _NM_RE.match(pattern)
        if not match:
            raise GaPConfigError(
                f"pattern must be 'unstructured' or 'N:M' such "
                f"as '2:4', but got {pattern!r}")
        n, m = int(match.group(1)), int(match.group(2))
    elif (isinstance(pattern, (tuple, list)) and len(pattern) == 2
          and all(isinstance(v, int) for v in pattern)):
        n, m = pattern
    else:
        raise GaPConfigError(
            f"pattern must be 'unstructured' or 'N:M' such as "
            f"'2:4', but got {pattern!r}")
    if not 0 < n < m:
        raise GaPConfigError(
            f'N:M pattern needs 0 < N < M, but got N={n}, M={m} '
            f'(from {pattern!r})')
    return n, m


@SPARSIFIERS.register_module()
class Sparsifier:
    """Weight masks, their per-layer targets and the partitions they are
    grouped in: the "what" of every method.

    It knows nothing about training loops: a hook decides *when* to call
    :meth:`prune`, :meth:`grow` or :meth:`set_masks`, and the optimizer
    wrapper calls :meth:`mask_grads_` and :meth:`apply_masks_` around every
    step.

    A layer is either sparse (it has a mask; masked weights are exactly 0)
    or dense (no mask, nothing to do). A layer is one parameter; one that
    holds several weights stacked along dim 0 (the q, k and v projections
    of an ``nn.MultiheadAttention``'s packed ``in_proj_weight``; see
    :class:`~gap_mm.sparsity.WeightLayout`) has one mask, but each of its
    *blocks* is counted and selected on its own: ``'uniform'`` prunes each
    block to its own exact count, ERK sizes each by its own shape, and a
    re-prune keeps each block's count. Masks are int8 keep words (see
    :mod:`gap_mm.sparsity.masks`): 1 byte per weight in memory, 1 bit in a
    checkpoint. :meth:`keep_mask` and :meth:`pruned_mask` give bool views.

    Which weights a prune keeps is decided by :meth:`score` (larger
    survives), by default ``|w|``; pass ``score=dict(type=...)`` from
    :data:`gap_mm.registry.SCORES`, or subclass, override :meth:`score` and
    register the subclass in :data:`gap_mm.registry.SPARSIFIERS` to reach it
    from a config (``GaPHook(sparsifier=dict(type='MySparsifier'))``).

    Args:
        params (Mapping[str, nn.Parameter]): Prunable weights by name, in
            model order (see :func:`~gap_mm.sparsity.select_prunable`).
        sparsity (float): Target sparsity ``s`` in ``[0, 1)``. Ignored for
            an N:M pattern, whose sparsity is ``1 - N/M``. Defaults to 0.8.
        distribution (str): ``'uniform'``, ``'global'`` or ``'erk'``.
            Defaults to ``'uniform'``.
        pattern (str | tuple): ``'unstructured'`` or ``'N:M'`` such as
            ``'2:4'`` (N kept in every M consecutive input weights).
            Defaults to ``'unstructured'``.
        overrides (Mapping[str, float], optional): Regex → sparsity for
            particular layers, on top of the distribution.
        partitions (int | list): K for contiguous automatic partitions, or a
            list of regex groups. Defaults to 1.
        erk_scale (float): Power on the ERK score. Defaults to 1.0.
        score (dict | callable, optional): The importance of a prune.
            Defaults to magnitude.
        layouts (Mapping[str, WeightLayout], optional): The layout of each
            weight (its blocks and its output dim). Defaults to
            ``params.layouts`` when ``params`` comes from
            :func:`~gap_mm.sparsity.select_prunable`, else plain
            ``(out, in, ...)`` weights of one block.
    """

    def __init__(self,
                 params: Mapping[str, nn.Parameter],
                 sparsity: float = 0.8,
                 distribution: str = 'uniform',
                 pattern: Union[str, Tuple[int, int]] = 'unstructured',
                 overrides: Optional[Mapping[str, float]] = None,
                 partitions: PartitionSpec = 1,
                 erk_scale: float = 1.0,
                 score: Union[Mapping, Score, None] = None,
                 layouts: Optional[Mapping[str, WeightLayout]] = None) -> None:
        if not params:
            raise GaPConfigError(f'{type(self).__name__} needs at least one '
                                 'prunable parameter')
        if layouts is None:
            layouts = getattr(params, 'layouts', None) or {}
        self.params: Dict[str, nn.Parameter] = OrderedDict(params)
        self.names: List[str] = list(self.params)
        self.layouts: Dict[str, WeightLayout] = OrderedDict(
            (n, WeightLayout(*layouts.get(n, PLAIN_LAYOUT)))
            for n in self.names)
        self._check_layouts()
        self.nm = parse_pattern(pattern)
        self.sparsity = check_sparsity(sparsity)
        if distribution not in DISTRIBUTIONS:
            raise GaPConfigError(
                f'distribution must be one of {DISTRIBUTIONS}, '
                f'but got {distribution!r}')
        self.distribution = distribution
        if self.nm is not None and overrides:
            raise GaPConfigError(
                'per-layer overrides do not apply to an N:M '
                f'pattern ({pattern!r}); exclude those layers '
                'instead')
        self.overrides = match_overrides(self.names, overrides)
        self._numels = OrderedDict(
            (n, p.numel()) for n, p in self.params.items())
        self.partitions: List[List[str]] = build_partitions(
            self._numels, partitions)
        self.partition_of: Dict[str, int] = {
            name: k
            for k, group in enumerate(self.partitions)
            for name in group
        }
        self.erk_scale = erk_scale
        self.score_fn: Score = build_score(score)
        # Target kept weights per layer and per block of a layer ('global'
        # fills them at the first prune): num_keep[n] == sum(block_keep[n]).
        self.num_keep: Dict[str, int] = OrderedDict()
        self.block_keep: Dict[str, List[int]] = OrderedDict()
        self._set_targets(self._initial_keep(self.sparsity))
        # Keep words of the sparse layers, in model order.
        self._words: Dict[str, torch.Tensor] = OrderedDict()

    # ------------------------------------------------------------- layouts
    def _check_layouts(self) -> None:
        for name, layout in self.layouts.items():
            shape = tuple(self.params[name].shape)
            if layout.blocks < 1 or (layout.blocks > 1 and
                                     (not shape or shape[0] % layout.blocks)):
                raise GaPConfigError(
                    f'{name} of shape {shape} cannot hold {layout.blocks} '
                    f'blocks along dim 0')
            if layout.out_dim not in (0, 1) or (layout.out_dim
                                                and len(shape) < 2):
                raise GaPConfigError(
                    f'{name} of shape {shape} has no output dim '
                    f'{layout.out_dim}')

    def blocks_of(self, name: str,
                  tensor: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Views of ``tensor`` (shaped like the weight ``name``, or flat
        along dim 0 in the same order) for each block of the weight: the
        tensor itself for a weight of one block."""
        blocks = self.layouts[name].blocks
        return (tensor, ) if blocks == 1 else tensor.chunk(blocks, 0)

    def block_shapes(self, name: str) -> List[Tuple[int, ...]]:
        """The shape of each block of weight ``name``."""
        shape = tuple(self.params[name].shape)
        blocks = self.layouts[name].blocks
        return [(shape[0] // blocks, ) + shape[1:]] * blocks

    # ------------------------------------------------------------- targets
    def _units(self, names: Iterable[str]):
        """``(name, block) -> shape`` of the blocks of ``names``."""
        return OrderedDict(((name, i), shape) for name in names
                           for i, shape in enumerate(self.block_shapes(name)))

    def _initial_keep(self, sparsity: float) -> Dict[str, List[int]]:
        """The kept count of every block of every layer the distribution
        sets now (for ``'global'``: only the overridden layers)."""
        if self.nm is not None:
            n, m = self.nm
            for name, param in self.params.items():
                dim = self.layouts[name].in_dim
                if param.dim() < 2 or param.shape[dim] % m:
                    raise GaPConfigError(
                        f'N:M pattern {n}:{m} cannot prune {name} of shape '
                        f'{tuple(param.shape)}: its input dimension must '
                        f'divide by {m} (dim {dim} of the weight). Exclude '
                        f'it with `exclude`.')
            keep = OrderedDict(
                (unit, int(torch.Size(shape).numel()) * n // m)
                for unit, shape in self._units(self.names).items())
        else:
            rest = self._units(n for n in self.names
                               if n not in self.overrides)
            numels = OrderedDict(
                (u, int(torch.Size(s).numel())) for u, s in rest.items())
            keep = OrderedDict()
            if self.distribution == 'uniform':
                keep.update(uniform_keep(numels, sparsity))
            elif self.distribution == 'erk':
                keep.update(erk_keep(rest, sparsity, self.erk_scale))
            for name, value in self.overrides.items():
                keep.update(
                    uniform_keep(
                        OrderedDict((u, int(torch.Size(s).numel()))
                                    for u, s in self._units([name]).items()),
                        value))
        out: Dict[str, List[int]] = OrderedDict()
        for name in self.names:
            blocks = [
                keep.get((name, i))
                for i in range(self.layouts[name].blocks)
            ]
            if blocks[0] is not None:
                out[name] = [int(k) for k in blocks]
        return out

    def _set_targets(self, block_keep: Mapping[str, Sequence[int]]) -> None:
        """Replace the targets by ``block_keep`` (per layer, per block)."""
        self.block_keep = OrderedDict(
            (n, list(block_keep[n])) for n in self.names if n in block_keep)
        self.num_keep = OrderedDict(
            (n, sum(k)) for n, k in self.block_keep.items())

    def _record_keep(self, name: str, pruned: torch.Tensor) -> None:
        """Make the kept counts of ``pruned`` (a pruned mask of ``name``)
        its targets, block by block."""
        self.block_keep[name] = [
            b.numel() - int(torch.count_nonzero(b))
            for b in self.blocks_of(name, pruned)
        ]
        self.num_keep[name] = sum(self.block_keep[name])

    def set_sparsity(self, sparsity: float) -> None:
        """Change the overall target (a ramp such as GMP's).

        The per-layer targets are recomputed by the distribution; the masks
        change at the next :meth:`prune`. With ``'global'`` the next prune
        must cover every partition, which draws a new threshold.
        Per-layer overrides keep their own sparsity.
        """
        if self.nm is not None:
            raise GaPConfigError(
                'an N:M pattern has the fixed sparsity 1 - N/M; set_sparsity '
                'does not apply to it')
        self.sparsity = check_sparsity(sparsity)
        self._set_targets(self._initial_keep(self.sparsity))

    # ---------------------------------------------------------------- state
    @property
    def num_partitions(self) -> int:
        return len(self.partitions)

    @property
    def dense_partitions(self) -> Set[int]:
        """Partitions none of whose layers holds a mask."""
        return {
            k
            for k, group in enumerate(self.partitions)
            if not any(n in self._words for n in group)
        }

    def is_sparse(self, name: str) -> bool:
        return name in self._words

    def keep_mask(self, name: str) -> Optional[torch.Tensor]:
        """Bool mask, True where the weight is kept; None for a dense
        layer."""
        word = self._words.get(name)
        return None if word is None else keep_of(word)

    def pruned_mask(self, name: str) -> Optional[torch.Tensor]:
        """Bool mask, True where the weight is pruned; None for a dense
        layer."""
        word = self._words.get(name)
        return None if word is None else pruned_of(word)

    def score(self, name: str, param: torch.Tensor) -> torch.Tensor:
        """Importance of each weight; larger survives. Defaults to the
        ``score`` given at construction (``|w|``)."""
        return self.score_fn(name, param)

    # ------------------------------------------------------------- events
    def _check_partitions(self, partitions: Iterable[int]) -> List[int]:
        ids = sorted(set(int(k) for k in partitions))
        bad = [k for k in ids if not 0 <= k < self.num_partitions]
        if bad:
            raise GaPConfigError(
                f'partition ids {bad} out of range; there are '
                f'{self.num_partitions} partitions')
        return ids

    def _set_word(self, name: str, pruned: torch.Tensor) -> None:
        word = keep_word(pruned.to(self.params[name].device))
        self._words[name] = word
        zero_pruned_(self.params[name], word)

    def _sort_words(self) -> None:
        # Keep the dict in model order whatever order events come in.
        self._words = OrderedDict(
            (n, self._words[n]) for n in self.names if n in self._words)

    @torch.no_grad()
    def prune(
        self,
        partitions: Iterable[int],
        score: Optional[Callable[[str, torch.Tensor], torch.Tensor]] = None
    ) -> Dict[str, torch.Tensor]:
        """Prune the layers of ``partitions`` to their targets by score.

        A layer that is already sparse is re-selected from its current
        weights (its masked weights are 0, so they stay pruned unless the
        target changed). The weights are zeroed at once.

        Args:
            partitions (Iterable[int]): Partition ids.
            score (callable, optional): Rank by this score instead of
                :meth:`score`, e.g. random scores for a random initial mask.

        Returns:
            dict[str, Tensor]: The new pruned masks (True = pruned) of the
            layers touched, for zeroing optimizer state.
        """
        names = [
            n for k in self._check_partitions(partitions)
            for n in self.partitions[k]
        ]
        if not names:
            return {}
        new: Dict[str, torch.Tensor] = OrderedDict()
        for name, pruned in zip(names, self._select_pruned(names, score)):
            self._set_word(name, pruned)
            new[name] = pruned
        self._sort_words()
        return new

    @torch.no_grad()
    def select_pruned(
        self,
        names: Sequence[str],
        score: Optional[Callable[[str, torch.Tensor], torch.Tensor]] = None
    ) -> Dict[str, torch.Tensor]:
        """What :meth:`prune` would prune in ``names``, without pruning.

        The layers' targets, distribution (``'global'``: one threshold over
        ``names``, which must then be every pooled layer at the first call)
        and tie-break are :meth:`prune`'s; no mask is set and no weight is
        touched. For a method that picks its pruned set long before it masks
        it (GReg).

        Returns:
            dict[str, Tensor]: Bool pruned masks (True = pruned) by name.
        """
        names = list(names)
        return OrderedDict(zip(names, self._select_pruned(names, score)))

    def _select_pruned(self,
                       names: Sequence[str],
                       score=None) -> List[torch.Tensor]:
        """Pruned masks (True = pruned) of ``names`` by score."""
        magnitude = score is None and self._magnitude()
        score = score or self.score
        if self.nm is not None:
            n, m = self.nm
            return [
                ~nm_mask(
                    score(name, self.params[name]), n, m,
                    self.layouts[name].in_dim) for name in names
            ]
        pooled = [n for n in names if n not in self.overrides]
        chosen: Dict[str, torch.Tensor] = {}
        if self.distribution == 'global' and pooled:
            scores = [score(n, self.params[n]) for n in pooled]
            if all(n in self.num_keep for n in pooled):
                budget = sum(self.num_keep[n] for n in pooled)
            else:  # first prune: one threshold over all pooled layers
                if set(pooled) != set(self.names) - set(self.overrides):
                    raise RuntimeError(
                        "the 'global' distribution must prune all layers "
                        'once before pruning single partitions')
                total = sum(s.numel() for s in scores)
                budget = total - int(round(self.sparsity * total))
            masks = topk_masks(scores, budget, pruned=True)
            chosen = dict(zip(pooled, masks))
            for name, mask in chosen.items():
                self._record_keep(name, mask)
            self._sort_targets()
            emptied = [n for n in pooled if self.num_keep[n] == 0]
            if emptied:
                warnings.warn(
                    f'global magnitude pruning removed every weight of '
                    f'{emptied}; consider exclude=[...] or overrides for '
                    f'them, or the uniform/erk distribution')
        result = []
        scratch = None  # the magnitudes of one layer after another
        for name in names:
            if name in chosen:
                result.append(chosen[name])
                continue
            param = self.params[name]
            if scratch is None and magnitude:
                scratch = param.new_empty(
                    max(self.params[n].numel() for n in names))
            if magnitude and param.dtype == scratch.dtype:
                scores = torch.abs(
                    param.detach(),
                    out=scratch[:param.numel()].view(param.shape))
            else:
                scores = score(name, param)
            # block by block, so that each block (an attention's q, k, v)
            # keeps its own count
            masks = [
                topk_masks([b], k, pruned=True)[0] for b, k in zip(
                    self.blocks_of(name, scores), self.block_keep[name])
            ]
            result.append(masks[0] if len(masks) == 1 else torch.cat(masks))
        return result

    def _sort_targets(self) -> None:
        self._set_targets(self.block_keep)

    @torch.no_grad()
    def grow(self, partitions: Iterable[int]) -> Dict[str, torch.Tensor]:
        """Make the layers of ``partitions`` dense.

        The regrown weights are 0 already (they were masked), so they start
        training from exactly 0.

        Returns:
            dict[str, Tensor]: The dropped pruned masks, i.e. the regrown
            positions, for resetting optimizer state.
        """
        grown: Dict[str, torch.Tensor] = OrderedDict()
        for k in self._check_partitions(partitions):
            for name in self.partitions[k]:
                word = self._words.pop(name, None)
                if word is not None:
                    grown[name] = word == 0
        return grown

    @torch.no_grad()
    def set_masks(
        self, pruned: Mapping[str, Optional[torch.Tensor]]
    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """Replace the masks of some layers (a drop-and-grow update).

        Args:
            pruned (Mapping[str, Tensor | None]): New bool pruned-masks by
                layer name; None makes a layer dense.

        Returns:
            tuple[dict, dict]: ``(newly_pruned, newly_grown)`` bool masks
            per layer touched: positions pruned now that were not before
            (their weights are zeroed here; zero their optimizer state), and
            positions kept now that were pruned before (their weights are 0;
            reset their optimizer state).
        """
        newly_pruned: Dict[str, torch.Tensor] = OrderedDict()
        newly_grown: Dict[str, torch.Tensor] = OrderedDict()
        for name, mask in pruned.items():
            if name not in self.params:
                raise KeyError(f'{name!r} is not a prunable parameter of '
                               f'this sparsifier')
            old = self.pruned_mask(name)
            if mask is None:
                if old is not None:
                    newly_grown[name] = old
                    del self._words[name]
                continue
            mask = mask.to(torch.bool)
            if tuple(mask.shape) != tuple(self.params[name].shape):
                raise ValueError(
                    f'mask for {name} has shape {tuple(mask.shape)}, the '
                    f'parameter has {tuple(self.params[name].shape)}')
            mask = mask.to(self.params[name].device)
            newly_pruned[name] = mask if old is None else mask & ~old
            if old is not None:
                newly_grown[name] = old & ~mask
            self._set_word(name, mask)
        self._sort_words()
        return newly_pruned, newly_grown

    @torch.no_grad()
    def set_keep_masks(self,
                       keep: Mapping[str, torch.Tensor],
                       zero_weights: bool = True) -> None:
        """Set the masks of some layers from bool keep-masks (True where
        kept), without :meth:`set_masks`' report of what changed.

        Args:
            keep (Mapping[str, Tensor]): Keep-masks by layer name, each
                shaped like its weight.
            zero_weights (bool): Zero the weights the masks prune. False
                leaves them as they are, for a caller that overwrites them
                at once (the P-GaP combine). Defaults to True.
        """
        for name, mask in keep.items():
            param = self.params[name]
            if tuple(mask.shape) != tuple(param.shape):
                raise ValueError(
                    f'mask for {name} has shape {tuple(mask.shape)}, the '
                    f'parameter has {tuple(param.shape)}')
            word = mask.to(param.device, torch.bool).view(torch.int8).neg()
            self._words[name] = word
            if zero_weights:
                zero_pruned_(param, word)
        self._sort_words()

    def _magnitude(self) -> bool:
        """Whether :meth:`score` is the default ``|w|``."""
        return (type(self).score is Sparsifier.score
                and type(self.score_fn) is MagnitudeScore)

    def _scores_at(self, name: str, positions: torch.Tensor) -> torch.Tensor:
        """:meth:`score` of ``name`` at some flat positions; the default
        magnitude reads only the weights there."""
        param = self.params[name]
        if self._magnitude():
            return param.detach().reshape(-1).index_select(0,
                                                           positions).abs_()
        return self.score(name, param).reshape(-1).index_select(0, positions)

    @torch.no_grad()
    def drop_and_grow(
        self, fraction: float, grow_score: Callable[[str, torch.Tensor],
                                                    torch.Tensor]
    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], int]:
        """Rewire every sparse layer at a fixed count (RigL, SET).

        Layer by layer in model order, and block by block within a layer
        (:meth:`blocks_of`), ``k = round(fraction * active)`` weights move
        (see :func:`~gap_mm.sparsity.num_to_move`): the ``k`` active ones
        of smallest :meth:`score` are dropped and zeroed, and the ``k``
        inactive ones (those just dropped included) of largest
        ``grow_score`` become active, at the 0 they hold. These are the
        masks of :func:`~gap_mm.sparsity.drop_and_grow`, ties broken by
        position; only the moved positions are gathered.

        Args:
            fraction (float): The drop fraction of this update.
            grow_score (callable): ``grow_score(name, param)``, the grow
                scores of a layer, shaped like it; read once per layer that
                moves, just before it does.

        Returns:
            tuple[dict, dict, int]: ``(newly_pruned, newly_grown, moved)``:
            per layer that moved, the int64 flat positions pruned now that
            were active before, and those active now that were pruned before
            (for :meth:`reset_optimizer_state_`); and the number of weights
            moved.
        """
        newly_pruned: Dict[str, torch.Tensor] = OrderedDict()
        newly_grown: Dict[str, torch.Tensor] = OrderedDict()
        moved = 0
        for name in self.names:
            word = self._words.get(name)
            if word is None:
                continue
            keep = keep_of(word).reshape(-1)
            # block by block (an attention's q, k, v keep their own counts);
            # a block is a contiguous range of the flat weight
            plan, layer_moved = [], 0
            for block in self.blocks_of(name, keep):
                active = flat_nonzero(block)
                k = num_to_move(active.numel(),
                                block.numel() - active.numel(), fraction)
                plan.append((block, active, k))
                layer_moved += k
            if not layer_moved:
                continue
            param = self.params[name]
            grow = grow_score(name, param).reshape(-1)
            parts, dropped, grown, start = [], [], [], 0
            for (block, active, k), grow_block in zip(
                    plan, self.blocks_of(name, grow)):
                if k:
                    pruned, drop_b, grow_b = drop_grow_positions(
                        block, active,
                        self._scores_at(name, active + start), grow_block, k)
                    dropped.append(drop_b + start)
                    grown.append(grow_b + start)
                else:
                    pruned = block.logical_not()
                parts.append(pruned)
                start += block.numel()
            pruned = parts[0] if len(parts) == 1 else torch.cat(parts)
            dropped = dropped[0] if len(dropped) == 1 else torch.cat(dropped)
            grown = grown[0] if len(grown) == 1 else torch.cat(grown)
            self._set_word(name, pruned.view(param.shape))
            # a position dropped and grown again is unchanged
            newly_pruned[name] = dropped.index_select(
                0, flat_nonzero(pruned.index_select(0, dropped)))
            newly_grown[name] = grown.index_select(
                0, flat_nonzero(keep.index_select(0, grown).logical_not_()))
            moved += layer_moved
        return newly_pruned, newly_grown, moved

    # ------------------------------------------------------- every step
    @torch.no_grad()
    def apply_masks_(self) -> None:
        """Zero the masked weights (after an optimizer step)."""
        for name, word in self._words.items():
            zero_pruned_(self.params[name], word)

    @torch.no_grad()
    def apply_masks_to_(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Zero other tensors shaped like the weights (an EMA copy of the
        model, say) where the masks prune, by parameter name."""
        for name, word in self._words.items():
            tensor = tensors.get(name)
            if tensor is not None:
                zero_pruned_(tensor.data, word.to(tensor.device))

    @torch.no_grad()
    def mask_grads_(self) -> None:
        """Zero the gradients at masked positions (before an optimizer
        step), so that no momentum or Adam moment builds up there."""
        for name, word in self._words.items():
            grad = self.params[name].grad
            if grad is not None:
                zero_pruned_(grad, word)

    def zero_optimizer_state_(self, optimizer: torch.optim.Optimizer,
                              masks: Mapping[str, torch.Tensor]) -> int:
        """Zero ``optimizer``'s per-parameter state where ``masks`` is True
        (see :func:`~gap_mm.sparsity.optim_state.zero_optimizer_state_`)."""
        return zero_optimizer_state_(optimizer, self.params, masks)

    def init_regrown_state_(self,
                            optimizer: torch.optim.Optimizer,
                            masks: Mapping[str, torch.Tensor],
                            second_moment: str = 'mean') -> int:
        """Reset ``optimizer``'s state at regrown positions (see
        :func:`~gap_mm.sparsity.optim_state.init_regrown_state_`)."""
        return init_regrown_state_(optimizer, self.params, masks,
                                   second_moment)

    def reset_optimizer_state_(self,
                               optimizer: torch.optim.Optimizer,
                               pruned: Mapping[str, torch.Tensor],
                               grown: Mapping[str, torch.Tensor],
                               second_moment: str = 'mean') -> int:
        """:meth:`zero_optimizer_state_` where ``pruned``, then
        :meth:`init_regrown_state_` where ``grown``, in one pass where they
        can share it (see
        :func:`~gap_mm.sparsity.optim_state.reset_optimizer_state_`)."""
        return reset_optimizer_state_(optimizer, self.params, pruned, grown,
                                      second_moment)

    # ------------------------------------------------------------ reports
    def layer_stats(self) -> List[Dict[str, object]]:
        """Per-layer rows: name, shape, numel, kept, sparsity, partition."""
        rows = []
        for name in self.names:
            param = self.params[name]
            word = self._words.get(name)
            n_pruned = 0 if word is None else num_pruned(word)
            row = dict(
                name=name,
                shape=tuple(param.shape),
                numel=param.numel(),
                kept=param.numel() - n_pruned,
                sparsity=n_pruned / max(1, param.numel()),
                partition=self.partition_of[name],
                dense=word is None)
            if self.layouts[name].blocks > 1:
                row['blocks'] = [
                    dict(
                        shape=tuple(b.shape),
                        numel=b.numel(),
                        kept=b.numel() if word is None else int(
                            torch.count_nonzero(b))) for b in self.blocks_of(
                                name, param if word is None else word)
                ]
            rows.append(row)
        return rows

    @staticmethod
    def summarize(rows: Sequence[Mapping[str, object]],
                  num_partitions: int) -> Dict[str, float]:
        """Overall and per-partition sparsity of :meth:`layer_stats`
        rows."""
        total = sum(r['numel'] for r in rows)
        kept = sum(r['kept'] for r in rows)
        out = {'sparsity': 1.0 - kept / max(1, total)}
        for k in range(num_partitions):
            part = [r for r in rows if r['partition'] == k]
            n = sum(r['numel'] for r in part)
            out[f'sparsity_p{k}'] = 1.0 - sum(r['kept']
                                              for r in part) / max(1, n)
        return out

    # ------------------------------------------------------ serialization
    def fingerprint(self) -> torch.Tensor:
        """A digest of every mask, for comparing ranks.

        One int64 row per layer: the number of pruned weights (-1 for a
        dense layer) and the first 8 bytes of the BLAKE2b digest of the
        bit-packed mask. Two ranks' rows differ unless their masks are equal
        (up to a 2^-64 chance of a hash collision). Always a CPU tensor.
        """
        rows = []
        for name in self.names:
            word = self._words.get(name)
            if word is None:
                rows.append((-1, -1))
                continue
            # packbits sets a bit for every nonzero byte: the kept weights
            packed = np.packbits(
                word.detach().reshape(-1).cpu().numpy().view(np.uint8))
            digest = hashlib.blake2b(packed, digest_size=8)
            rows.append(
                (num_pruned(word),
                 int.from_bytes(digest.digest(), 'little', signed=True)))
        return torch.tensor(rows, dtype=torch.int64)

    def state_dict(self) -> Dict[str, object]:
        """Masks bit-packed (keep-masks, 1 bit per weight), targets (per
        block under ``block_keep`` for a weight of several blocks) and
        partitions."""
        state = dict(
            masks={
                name: pack_mask(word != 0)
                for name, word in self._words.items()
            },
            num_keep=dict(self.num_keep),
            partitions=[list(g) for g in self.partitions])
        blocks = {
            n: list(k)
            for n, k in self.block_keep.items()
            if self.layouts[n].blocks > 1
        }
        if blocks:
            state['block_keep'] = blocks
        return state

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore :meth:`state_dict` output and zero the masked weights."""
        if state.get('partitions') is not None and [
                list(g) for g in state['partitions']
        ] != [list(g) for g in self.partitions]:
            saved = [n for g in state['partitions'] for n in g]
            only_saved = [n for n in saved if n not in self.params]
            only_here = [n for n in self.names if n not in set(saved)]
            diff = ''
            if only_saved or only_here:
                diff = (f' Prunable in the checkpoint only: '
                        f'{_preview(only_saved)}; here only: '
                        f'{_preview(only_here)}. (Since gap_mm prunes '
                        f'transposed convs and attention projections and '
                        f'leaves frozen weights and output layers of heads '
                        f'dense by default, a run started by an older '
                        f'gap_mm may need `module_types`, '
                        f'`prune_output_layers` or `exclude` set as it '
                        f'pruned.)')
            raise GaPConfigError(
                'The checkpoint was trained with other partitions than '
                'the current config builds; resume with the same '
                '`partitions`, `include`/`exclude` and model.' + diff)
        masks = state.get('masks', {})
        unknown = sorted(set(masks) - set(self.names))
        if unknown:
            raise GaPConfigError(f'The checkpoint holds masks for parameters '
                                 f'that are not prunable here: {unknown}')
        words = OrderedDict()
        for name in self.names:
            if name not in masks:
                continue
            keep = unpack_mask(masks[name], name)
            if tuple(keep.shape) != tuple(self.params[name].shape):
                raise GaPConfigError(
                    f'mask for {name} has shape {tuple(keep.shape)}, '
                    f'the parameter has {tuple(self.params[name].shape)}')
            words[name] = keep_word(~keep).to(self.params[name].device)
        self._words = words
        saved_blocks = state.get('block_keep') or {}
        for name, value in (state.get('num_keep') or {}).items():
            if name not in self.params:
                continue
            value = int(value)
            if name in saved_blocks:
                blocks = [int(k) for k in saved_blocks[name]]
            elif self.layouts[name].blocks == 1:
                blocks = [value]
            elif name in words:  # a state without block counts: the mask's
                self._record_keep(name, words[name] == 0)
                continue
            elif self.num_keep.get(name) == value:
                continue
            else:
                raise GaPConfigError(
                    f'the checkpoint holds no per-block counts for {name}, '
                    f'whose {self.layouts[name].blocks} blocks are counted '
                    f'on their own')
            if len(blocks) != self.layouts[name].blocks or sum(
                    blocks) != value:
                raise GaPConfigError(
                    f'the checkpoint\'s block counts {blocks} of {name} do '
                    f'not fit its {self.layouts[name].blocks} blocks and '
                    f'{value} kept weights')
            self.block_keep[name] = blocks
        self._sort_targets()
        self.apply_masks_()


def _preview(names: Sequence[str], limit: int = 5) -> str:
    names = list(names)
    more = f' ... ({len(names)} in all)' if len(names) > limit else ''
    return '[' + ', '.join(names[:limit]) + more + ']'


@SPARSIFIERS.register_module()
class MagnitudeSparsifier(Sparsifier):
    """:class:`Sparsifier` ranking by ``|w|``: GaP's, GMP's and RigL's drop
    criterion, and the default of every hook."""
