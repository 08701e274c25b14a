# Copyright (c) gap_mm contributors. All rights reserved.
"""The mask events as gap_mm implemented them before issue 33 (commit
5b6858e), copied where they differ from today's code (their error
messages shortened, the global distribution's warning left out).

Two users: the "before" column of ``bench_events.py`` and
``bench_combine.py``, timed side by side with today's code in one run, and
the tests that pin today's masks, counts and exchanged values bit for bit
to these (``tests/test_sparsity/test_events_match_before.py``,
``tests/test_engine/test_parallel_gap.py``). Nothing in ``gap_mm`` imports
this module.
"""
import hashlib
import math
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as torch_dist
from mmengine import dist as mm_dist

from gap_mm.engine.parallel_gap import CombineExchange
from gap_mm.sparsity import MagnitudeSparsifier, num_pruned, num_to_move
from gap_mm.sparsity.optim_state import SECOND_MOMENT_KEYS
from gap_mm.sparsity.packing import pack_mask

_BRACKET_MIN_NUMEL = 1 << 21
_SAMPLE_SIZE = 1 << 16


# ------------------------------------------------------------------ topk
def _kth_largest_and_ties(scores, k):
    total = sum(s.numel() for s in scores)
    if not 1 <= k <= total:
        raise ValueError(f'k must be in [1, {total}], but got {k}')
    if total >= _BRACKET_MIN_NUMEL:
        gen = torch.Generator().manual_seed(0)
        sample = torch.cat([
            s.reshape(-1)[torch.randint(
                s.numel(), (max(1,
                                _SAMPLE_SIZE * s.numel() // total), ),
                generator=gen)] for s in scores if s.numel()
        ])
        m = sample.numel()
        q = 1.0 - k / total
        margin = 6.0 * math.sqrt(max(q * (1 - q), 1.0 / m) / m) + 4.0 / m
        lo_rank = min(m - 1, max(0, int((q - margin) * m)))
        hi_rank = min(m - 1, max(0, int(math.ceil((q + margin) * m))))
        sorted_sample = torch.sort(sample).values
        lo, hi = sorted_sample[lo_rank], sorted_sample[hi_rank]

        def count(pred):
            return sum(int(torch.count_nonzero(pred(s))) for s in scores)

        n_above_hi = count(lambda s: s > hi)
        if n_above_hi < k:
            n_above_lo = count(lambda s: s > lo)
            if n_above_lo >= k:
                where = [((s > lo) & (s <= hi)).nonzero().squeeze(1)
                         for s in scores]
                values = [s[i] for s, i in zip(scores, where)]
                inside = torch.cat(values)
                rank = k - n_above_hi
                value = torch.kthvalue(inside,
                                       inside.numel() - rank + 1).values
                ties = [i[v == value] for i, v in zip(where, values)]
                above = n_above_hi + int(torch.count_nonzero(inside > value))
                return value, ties, above
            if count(lambda s: s >= lo) >= k:
                return lo, None, n_above_lo
    flat = torch.cat([s.reshape(-1) for s in scores])
    return torch.kthvalue(flat, total - k + 1).values, None, None


def topk_masks(scores: Sequence[torch.Tensor],
               k: int,
               pruned: bool = False) -> List[torch.Tensor]:
    """The old ``gap_mm.sparsity.topk_masks``."""
    total = sum(s.numel() for s in scores)
    if not 0 <= k <= total:
        raise ValueError(f'k must be in [0, {total}], but got {k}')
    if k in (0, total):
        value = (k == total) != pruned
        return [torch.full_like(s, value, dtype=torch.bool) for s in scores]
    flats = [s.reshape(-1) for s in scores]
    threshold, ties, above = _kth_largest_and_ties(flats, k)
    if pruned:
        masks = [f <= threshold for f in flats]
        if above is None:
            above = total - sum(int(torch.count_nonzero(m)) for m in masks)
    else:
        masks = [f > threshold for f in flats]
        if above is None:
            above = sum(int(torch.count_nonzero(m)) for m in masks)
    remaining = k - above
    if ties is None:
        ties = (None, ) * len(flats)
    for flat, mask, tied in zip(flats, masks, ties):
        if remaining <= 0:
            break
        if tied is None:
            tied = (flat == threshold).nonzero().squeeze(1)
        take = tied[:remaining]
        mask[take] = not pruned
        remaining -= take.numel()
    assert remaining == 0, 'internal error: tie-break under-filled the mask'
    return [m.view_as(s) for m, s in zip(masks, scores)]


# ------------------------------------------------------------- drop/grow
@torch.no_grad()
def drop_and_grow(pruned: torch.Tensor, drop_score: torch.Tensor,
                  grow_score: torch.Tensor, k: int) -> torch.Tensor:
    """The old ``gap_mm.sparsity.drop_and_grow``."""
    flat = pruned.reshape(-1)
    active = (~flat).nonzero().squeeze(1)
    inactive_before = flat.numel() - active.numel()
    if not 0 <= k <= min(active.numel(), inactive_before):
        raise ValueError(
            f'k={k} must be in [0, min(active {active.numel()}, inactive '
            f'{inactive_before})]')
    if k == 0:
        return pruned.clone()
    keep_active = topk_masks([drop_score.reshape(-1)[active]],
                             active.numel() - k)[0]
    new_pruned = torch.ones_like(flat)
    new_pruned[active[keep_active]] = False
    candidates = new_pruned.nonzero().squeeze(1)
    grow = topk_masks([grow_score.reshape(-1)[candidates]], k)[0]
    new_pruned[candidates[grow]] = False
    return new_pruned.view_as(pruned)


# ---------------------------------------------------------- masks, state
def keep_word(pruned: torch.Tensor) -> torch.Tensor:
    """The old ``gap_mm.sparsity.keep_word``."""
    return (~pruned).to(torch.int8).neg_()


def _state_tensors(optimizer, params, masks):
    for name, mask in masks.items():
        state = optimizer.state.get(params[name])
        for key, value in (state or {}).items():
            if isinstance(value, torch.Tensor) and value.shape == mask.shape:
                yield key, value, mask.to(value.device)


@torch.no_grad()
def zero_optimizer_state_(optimizer, params, masks) -> int:
    """The old ``gap_mm.sparsity.zero_optimizer_state_``."""
    touched = 0
    for _, value, mask in _state_tensors(optimizer, params, masks):
        value.masked_fill_(mask, 0)
        touched += 1
    return touched


@torch.no_grad()
def init_regrown_state_(optimizer, params, masks,
                        second_moment: str = 'mean') -> int:
    """The old ``gap_mm.sparsity.init_regrown_state_``."""
    touched = 0
    for key, value, mask in _state_tensors(optimizer, params, masks):
        fill = 0.0
        if (second_moment == 'mean' and key in SECOND_MOMENT_KEYS
                and not bool(mask.all())):
            fill = value[~mask].mean()
        value.masked_fill_(mask, fill)
        touched += 1
    return touched


class SparsifierBefore(MagnitudeSparsifier):
    """:class:`~gap_mm.sparsity.MagnitudeSparsifier` with the old prune,
    mask setting, optimizer-state surgery and fingerprint."""

    def keep_mask(self, name: str) -> Optional[torch.Tensor]:
        word = self._words.get(name)
        return None if word is None else word != 0

    def pruned_mask(self, name: str) -> Optional[torch.Tensor]:
        word = self._words.get(name)
        return None if word is None else word == 0

    def _set_word(self, name: str, pruned: torch.Tensor) -> None:
        from gap_mm.sparsity import zero_pruned_
        word = keep_word(pruned.to(self.params[name].device))
        self._words[name] = word
        zero_pruned_(self.params[name], word)

    @torch.no_grad()
    def prune(self, partitions, score=None) -> Dict[str, torch.Tensor]:
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

    def _select_pruned(self, names, score=None) -> List[torch.Tensor]:
        score = score or self.score
        if self.nm is not None:
            return super()._select_pruned(names, score)
        pooled = [n for n in names if n not in self.overrides]
        chosen: Dict[str, torch.Tensor] = {}
        if self.distribution == 'global' and pooled:
            scores = [score(n, self.params[n]) for n in pooled]
            if all(n in self.num_keep for n in pooled):
                budget = sum(self.num_keep[n] for n in pooled)
            else:
                total = sum(s.numel() for s in scores)
                budget = total - int(round(self.sparsity * total))
            masks = topk_masks(scores, budget, pruned=True)
            chosen = dict(zip(pooled, masks))
            for name, mask in chosen.items():
                self.num_keep[name] = mask.numel() - int(
                    torch.count_nonzero(mask))
        result = []
        for name in names:
            if name in chosen:
                result.append(chosen[name])
            else:
                result.append(
                    topk_masks([score(name, self.params[name])],
                               self.num_keep[name],
                               pruned=True)[0])
        return result

    @torch.no_grad()
    def set_masks(self, pruned):
        newly_pruned: Dict[str, torch.Tensor] = OrderedDict()
        newly_grown: Dict[str, torch.Tensor] = OrderedDict()
        for name, mask in pruned.items():
            old = self.pruned_mask(name)
            if mask is None:
                if old is not None:
                    newly_grown[name] = old
                    del self._words[name]
                continue
            mask = mask.to(torch.bool).to(self.params[name].device)
            newly_pruned[name] = mask if old is None else mask & ~old
            if old is not None:
                newly_grown[name] = old & ~mask
            self._set_word(name, mask)
        self._sort_words()
        return newly_pruned, newly_grown

    def zero_optimizer_state_(self, optimizer, masks) -> int:
        return zero_optimizer_state_(optimizer, self.params, masks)

    def init_regrown_state_(self, optimizer, masks, second_moment='mean'):
        return init_regrown_state_(optimizer, self.params, masks,
                                   second_moment)

    def fingerprint(self) -> torch.Tensor:
        rows = []
        for name in self.names:
            word = self._words.get(name)
            if word is None:
                rows.append((-1, -1))
                continue
            packed = pack_mask(word != 0)['packed'].numpy()
            digest = hashlib.blake2b(packed.tobytes(), digest_size=8)
            rows.append(
                (num_pruned(word),
                 int.from_bytes(digest.digest(), 'little', signed=True)))
        return torch.tensor(rows, dtype=torch.int64)


def drop_grow_update(
        sp: MagnitudeSparsifier, grow_scores: Mapping[str, torch.Tensor],
        fraction: float) -> Tuple[Dict, Dict, int]:
    """The old ``DropGrowHook.update`` between its grow scores and its
    ``apply_event``: ``(newly_pruned, newly_grown, moved)``."""
    new, moved = {}, 0
    for name in sp.names:
        pruned = sp.pruned_mask(name)
        if pruned is None:
            continue
        n_pruned = int(pruned.sum())
        k = num_to_move(pruned.numel() - n_pruned, n_pruned, fraction)
        if k:
            new[name] = drop_and_grow(pruned, sp.score(name, sp.params[name]),
                                      grow_scores[name], k)
            moved += k
    newly_pruned, newly_grown = sp.set_masks(new)
    return newly_pruned, newly_grown, moved


# --------------------------------------------------------------- combine
def _exchange(views, op, copy_back: bool = True) -> int:
    by_dtype: Dict[torch.dtype, list] = OrderedDict()
    for tensor, index in views:
        by_dtype.setdefault(tensor.dtype, []).append((tensor, index))
    device = mm_dist.get_comm_device()
    sent = 0
    with torch.no_grad():
        for group in by_dtype.values():
            flat = torch.cat([(t.detach().reshape(-1) if index is None else
                               t.detach().reshape(-1).index_select(
                                   0, index)).to(device)
                              for t, index in group])
            op(flat)
            sent += flat.numel() * flat.element_size()
            if not copy_back:
                continue
            offset = 0
            for t, index in group:
                n = t.numel() if index is None else index.numel()
                chunk = flat[offset:offset + n].to(t.device)
                if index is None:
                    t.data.copy_(chunk.view_as(t))
                else:
                    values = torch.zeros_like(t.data).reshape(-1)
                    values.index_copy_(0, index, chunk)
                    t.data.copy_(values.view_as(t))
                offset += n
    return sent


def _digest(tensor: torch.Tensor) -> int:
    data = tensor.detach().cpu().contiguous().reshape(-1)
    if data.dtype == torch.bfloat16:
        data = data.view(torch.int16)
    return int.from_bytes(
        hashlib.blake2b(data.numpy().tobytes(), digest_size=8).digest(),
        'little',
        signed=True)


class CombineExchangeBefore(CombineExchange):
    """:class:`~gap_mm.engine.parallel_gap.CombineExchange` with the old
    combine and digest check."""

    def _exchange_masks(self, names: Sequence[str],
                        src: int) -> Dict[str, torch.Tensor]:
        numels = [self.tensors[n].numel() for n in names]
        total = sum(numels)
        device = mm_dist.get_comm_device()
        missing = [] if torch_dist.get_rank() != src else [
            n for n in names if not self.sparsifier.is_sparse(n)
        ]
        failed = torch.tensor([len(missing)], dtype=torch.int64)
        mm_dist.all_reduce(failed, op='max')
        if int(failed):
            raise RuntimeError(f'rank {src} holds {int(failed)} weights '
                               f'dense')
        if torch_dist.get_rank() == src:
            keep = torch.cat([
                self.sparsifier.keep_mask(n).reshape(-1).cpu() for n in names
            ])
            packed = torch.from_numpy(np.packbits(keep.numpy())).to(device)
        else:
            packed = torch.zeros(
                (total + 7) // 8, dtype=torch.uint8, device=device)
        torch_dist.broadcast(packed, src=src)
        flat = torch.from_numpy(
            np.unpackbits(packed.cpu().numpy(),
                          count=total).astype(bool)).to(device)
        masks = OrderedDict((n, m.view(self.tensors[n].shape))
                            for n, m in zip(names, flat.split(numels)))
        if torch_dist.get_rank() != src:
            self.sparsifier.set_masks(
                OrderedDict((n, ~m) for n, m in masks.items()))
        return masks

    def _partition_views(self, names, masks):
        params = set(self.names)
        views = []
        for name in names:
            keep = masks.get(name)
            index = None if keep is None else keep.reshape(
                -1).nonzero().squeeze(1)
            views.append((self.tensors[name], index))
            if name not in params:
                continue
            for t in self._state_tensors([name]):
                same = t.shape == self.tensors[name].shape
                views.append((t, index if same else None))
        return views

    def _check_layout(self, tensors, what: str) -> None:
        count = torch.tensor([sum(t.numel() for t in tensors)],
                             dtype=torch.int64)
        both = torch.cat([count, -count])
        mm_dist.all_reduce(both, op='max')
        if int(both[0]) != -int(both[1]):
            raise RuntimeError(f'the ranks hold {what} with different '
                               f'numbers of values')

    def combine(self) -> Dict[str, int]:
        k_parts = self.layout.num_groups
        world = torch_dist.get_world_size()
        params = set(self.names)
        moved = dict(broadcast=0, allreduce=0)
        for k in range(k_parts):
            names = [n for n, o in self.owner.items() if o == k]
            src = self.layout.leader(k)
            sparse = self._sparse_names(names)
            masks = self._exchange_masks(sparse, src) if sparse else {}
            moved['broadcast'] += (sum(m.numel() for m in masks.values()) +
                                   7) // 8 if masks else 0
            views = self._partition_views(names, masks)
            self._check_layout([t if i is None else i for t, i in views],
                               f'partition {k}')
            moved['broadcast'] += _exchange(
                views,
                lambda flat: torch_dist.broadcast(flat, src=src),
                copy_back=torch_dist.get_rank() != src)
        names = [n for n, o in self.owner.items() if o is None]
        tensors = [self.tensors[n] for n in names] + self._state_tensors(
            [n for n in names if n in params])
        self._check_layout(tensors, 'the uncovered tensors')
        floats = [t for t in tensors if t.is_floating_point()]
        others = [t for t in tensors if not t.is_floating_point()]

        def mean(flat):
            torch_dist.all_reduce(flat)
            flat.div_(world)

        _exchange([(t, None) for t in floats], mean)
        _exchange([(t, None) for t in others],
                  lambda f: torch_dist.broadcast(f, src=0))
        moved['allreduce'] = sum(t.numel() * t.element_size() for t in floats)
        return moved

    def verify_identical(self, where: str) -> None:
        names = list(self.tensors)
        rows = []
        for name in names:
            row = [_digest(self.tensors[name])]
            if name in self.names:
                row += [_digest(t) for t in self._state_tensors([name])]
            rows.append(sum(row) & ((1 << 63) - 1))
        local = torch.tensor(rows, dtype=torch.int64)
        both = torch.stack([local, -local])
        mm_dist.all_reduce(both, op='max')
        differs = (both[0] != -both[1]).nonzero().flatten().tolist()
        if differs:
            raise RuntimeError(f'after the P-GaP combine {where} the ranks '
                               f'hold different values')
