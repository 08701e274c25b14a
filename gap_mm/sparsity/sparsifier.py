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
    or dense (no mask, nothing to do). Masks are int8 keep words (see
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
    """

    def __init__(self,
                 params: Mapping[str, nn.Parameter],
                 sparsity: float = 0.8,
                 distribution: str = 'uniform',
                 pattern: Union[str, Tuple[int, int]] = 'unstructured',
                 overrides: Optional[Mapping[str, float]] = None,
                 partitions: PartitionSpec = 1,
                 erk_scale: float = 1.0,
                 score: Union[Mapping, Score, None] = None) -> None:
        if not params:
            raise GaPConfigError(f'{type(self).__name__} needs at least one '
                                 'prunable parameter')
        self.params: Dict[str, nn.Parameter] = OrderedDict(params)
        self.names: List[str] = list(self.params)
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
        # Target kept weights per layer; 'global' fills them at first prune.
        self.num_keep: Dict[str, int] = self._initial_keep(self.sparsity)
        # Keep words of the sparse layers, in model order.
        self._words: Dict[str, torch.Tensor] = OrderedDict()

    # ------------------------------------------------------------- targets
    def _initial_keep(self, sparsity: float) -> Dict[str, int]:
        if self.nm is not None:
            n, m = self.nm
            for name, param in self.params.items():
                if param.dim() < 2 or param.shape[1] % m:
                    raise GaPConfigError(
                        f'N:M pattern {n}:{m} cannot prune {name} of shape '
                        f'{tuple(param.shape)}: its input dimension must '
                        f'divide by {m}. Exclude it with `exclude`.')
            return OrderedDict(
                (k, v * n // m) for k, v in self._numels.items())
        rest = OrderedDict(
            (k, v) for k, v in self._numels.items() if k not in self.overrides)
        keep: Dict[str, int] = OrderedDict()
        if self.distribution == 'uniform':
            keep.update(uniform_keep(rest, sparsity))
        elif self.distribution == 'erk':
            keep.update(
                erk_keep({k: self.params[k].shape
                          for k in rest}, sparsity, self.erk_scale))
        for name, value in self.overrides.items():
            keep.update(uniform_keep({name: self._numels[name]}, value))
        return OrderedDict((k, keep[k]) for k in self.names if k in keep)

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
        self.num_keep = self._initial_keep(self.sparsity)

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
                ~nm_mask(score(name, self.params[name]), n, m)
                for name in names
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
                self.num_keep[name] = mask.numel() - int(
                    torch.count_nonzero(mask))
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
            result.append(
                topk_masks([scores], self.num_keep[name], pruned=True)[0])
        return result

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

        Layer by layer in model order, ``k = round(fraction * active)``
        weights move (see :func:`~gap_mm.sparsity.num_to_move`): the ``k``
        active ones of smallest :meth:`score` are dropped and zeroed, and
        the ``k`` inactive ones (those just dropped included) of largest
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
            active = flat_nonzero(keep)
            numel = word.numel()
            k = num_to_move(active.numel(), numel - active.numel(), fraction)
            if not k:
                continue
            param = self.params[name]
            pruned, dropped, grown = drop_grow_positions(
                keep, active, self._scores_at(name, active),
                grow_score(name, param), k)
            self._set_word(name, pruned.view(param.shape))
            # a position dropped and grown again is unchanged
            newly_pruned[name] = dropped.index_select(
                0, flat_nonzero(pruned.index_select(0, dropped)))
            newly_grown[name] = grown.index_select(
                0, flat_nonzero(keep.index_select(0, grown).logical_not_()))
            moved += k
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
            rows.append(
                dict(
                    name=name,
                    shape=tuple(param.shape),
                    numel=param.numel(),
                    kept=param.numel() - n_pruned,
                    sparsity=n_pruned / max(1, param.numel()),
                    partition=self.partition_of[name],
                    dense=word is None))
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
        """Masks bit-packed (keep-masks, 1 bit per weight), targets and
        partitions."""
        return dict(
            masks={
                name: pack_mask(word != 0)
                for name, word in self._words.items()
            },
            num_keep=dict(self.num_keep),
            partitions=[list(g) for g in self.partitions])

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore :meth:`state_dict` output and zero the masked weights."""
        if state.get('partitions') is not None and [
                list(g) for g in state['partitions']
        ] != [list(g) for g in self.partitions]:
            raise GaPConfigError(
                'The checkpoint was trained with other partitions than '
                'the current config builds; resume with the same '
                '`partitions`, `include`/`exclude` and model')
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
        self.num_keep.update({
            k: int(v)
            for k, v in state.get('num_keep', {}).items()
        })
        self.apply_masks_()


@SPARSIFIERS.register_module()
class MagnitudeSparsifier(Sparsifier):
    """:class:`Sparsifier` ranking by ``|w|``: GaP's, GMP's and RigL's drop
    criterion, and the default of every hook."""
