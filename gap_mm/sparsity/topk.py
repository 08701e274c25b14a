# Copyright (c) gap_mm contributors. All rights reserved.
"""Exact top-k masks with a deterministic tie-break.

``keep = n - round(s * n)`` entries survive, always: values strictly above
the k-th largest score are kept, and among scores *equal* to it the ones that
come first (flat order, then list order) are kept. No percentile, no ``>``
on a quantile, so ties (all-zero regrown weights, duplicated values) never
change the count.

Finding the k-th largest of millions of scores dominates a prune event.
From a fixed-seed sample of the scores, a bracket ``(lo, hi]`` is chosen
that holds the k-th largest with overwhelming probability; two comparisons
per score count what lies above each end and gather the few scores inside,
among which the k-th largest is selected exactly, and their positions also
settle the ties. When the bracket misses, a full :func:`torch.kthvalue`
decides. The result is exact either way; the sample only decides how fast
it is.
"""
import math
from typing import List, NamedTuple, Optional, Sequence

import numpy as np
import torch

# Below this many scores a plain kthvalue is as fast as the bracket.
_BRACKET_MIN_NUMEL = 1 << 15
# The sample is 1/64 of the scores, within these bounds.
_SAMPLE_MIN, _SAMPLE_MAX = 1 << 12, 1 << 16


def num_kept(numel: int, sparsity: float) -> int:
    """Number of entries a tensor of ``numel`` keeps at ``sparsity``.

    Uses Python's :func:`round` (half to even) on ``sparsity * numel``.
    """
    return numel - int(round(sparsity * numel))


def flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """int64 flat positions of the True entries of a bool tensor, in
    increasing order (:func:`torch.nonzero` of the flat view). On the CPU
    through :func:`numpy.flatnonzero`, which scans bytes faster."""
    if mask.device.type == 'cpu':
        return torch.from_numpy(np.flatnonzero(mask.numpy())).long()
    return mask.reshape(-1).nonzero().squeeze(1)


class _Bracketed(NamedTuple):
    """The k-th largest found inside a sampled bracket ``(lo, hi]``."""
    value: torch.Tensor  # the k-th largest
    above: int  # entries strictly above it
    above_hi: List[torch.Tensor]  # per tensor, bool: the entries above hi
    inside: List[torch.Tensor]  # per tensor, positions of those in (lo, hi]
    values: List[torch.Tensor]  # their scores


def _sample_positions(numel: int, size: int,
                      gen: torch.Generator) -> torch.Tensor:
    """``size`` increasing positions in ``[0, numel)``, one drawn at random
    from each of ``size`` equal strides (read in order, unlike positions
    drawn at random from the whole)."""
    stride = max(1, numel // size)
    count = min(size, numel)
    return torch.arange(count) * stride + torch.randint(
        stride, (count, ), generator=gen)


def _sample_quantiles(flats: Sequence[torch.Tensor], total: int,
                      q: float) -> Sequence[torch.Tensor]:
    """``(lo, hi)``: quantiles of a fixed-seed sample (proportional to each
    tensor's size) around ``q`` that bracket the ``q``-quantile of all
    scores but with a chance of about 1e-9."""
    gen = torch.Generator().manual_seed(0)
    size = min(_SAMPLE_MAX, max(_SAMPLE_MIN, total >> 6))
    parts = [
        f.index_select(
            0,
            _sample_positions(f.numel(), max(1, size * f.numel() // total),
                              gen).to(f.device)) for f in flats if f.numel()
    ]
    sample = parts[0] if len(parts) == 1 else torch.cat(parts)
    m = sample.numel()
    margin = 6.0 * math.sqrt(max(q * (1 - q), 1.0 / m) / m) + 4.0 / m
    lo_rank = min(m - 1, max(0, int((q - margin) * m)))
    hi_rank = min(m - 1, max(0, int(math.ceil((q + margin) * m))))
    lo = torch.kthvalue(sample, lo_rank + 1).values
    hi = lo
    if hi_rank != lo_rank:
        hi = torch.kthvalue(sample, hi_rank + 1).values
    return lo, hi


def _kth_largest(flats: Sequence[torch.Tensor], k: int):
    """The k-th largest over ``flats`` (1-D, one dtype), exactly.

    Returns a :class:`_Bracketed` when the sampled bracket held it, else
    ``(value, above)`` with ``above`` the count of entries strictly above
    the value, or None when it is unknown.
    """
    total = sum(f.numel() for f in flats)
    if not 1 <= k <= total:
        raise ValueError(f'k must be in [1, {total}], but got {k}')
    if total >= _BRACKET_MIN_NUMEL:
        lo, hi = _sample_quantiles(flats, total, 1.0 - k / total)
        # The answer t lies in (lo, hi] when fewer than k entries are above
        # hi and at least k are above lo: then it is selected exactly among
        # the few entries in between, whose positions also give the ties.
        # Otherwise, if at least k entries are at or above lo, t == lo, a
        # value so frequent that it fills the bracket's lower end (the
        # zeros of an already sparse layer).
        above_hi = [f > hi for f in flats]
        n_above_hi = sum(int(torch.count_nonzero(m)) for m in above_hi)
        if n_above_hi < k:
            scratch = torch.empty(
                max(f.numel() for f in flats),
                dtype=torch.bool,
                device=flats[0].device)
            inside, values = [], []
            for f, high in zip(flats, above_hi):
                between = torch.gt(f, lo, out=scratch[:f.numel()])
                between.bitwise_xor_(high)  # lo < f <= hi
                idx = flat_nonzero(between)
                inside.append(idx)
                values.append(f.index_select(0, idx))
            n_above_lo = n_above_hi + sum(i.numel() for i in inside)
            if n_above_lo >= k:
                pool = values[0] if len(values) == 1 else torch.cat(values)
                rank = k - n_above_hi  # rank of the answer in the pool
                value = torch.kthvalue(pool, pool.numel() - rank + 1).values
                above = n_above_hi + int(torch.count_nonzero(pool > value))
                return _Bracketed(value, above, above_hi, inside, values)
            n_at_lo = sum(int(torch.count_nonzero(f >= lo)) for f in flats)
            if n_at_lo >= k:
                return lo, n_above_lo
    flat = flats[0] if len(flats) == 1 else torch.cat(flats)
    return torch.kthvalue(flat, total - k + 1).values, None


def kth_largest(scores: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """The k-th largest value (1-based) over several tensors, exactly.

    Args:
        scores (Sequence[Tensor]): Flat score tensors, all the same dtype.
        k (int): Rank, ``1 <= k <= total numel``.

    Returns:
        Tensor: 0-dim tensor holding the value.
    """
    found = _kth_largest([s.reshape(-1) for s in scores], k)
    return found.value if isinstance(found, _Bracketed) else found[0]


def _masks_from_bracket(found: _Bracketed, k: int,
                        pruned: bool) -> List[torch.Tensor]:
    """Masks from the entries above ``hi`` and those inside the bracket,
    without another pass over the scores."""
    remaining = k - found.above  # entries equal to the value still to keep
    masks = []
    for high, idx, vals in zip(found.above_hi, found.inside, found.values):
        take = vals > found.value
        if remaining > 0:
            tied = flat_nonzero(vals == found.value)[:remaining]
            take[tied] = True
            remaining -= tied.numel()
        mask = high.logical_not_() if pruned else high
        mask.index_fill_(0, idx.index_select(0, flat_nonzero(take)),
                         not pruned)
        masks.append(mask)
    assert remaining == 0, 'internal error: tie-break under-filled the mask'
    return masks


def topk_masks(scores: Sequence[torch.Tensor],
               k: int,
               pruned: bool = False) -> List[torch.Tensor]:
    """Boolean masks of the ``k`` largest scores over several tensors.

    Ties at the threshold are broken by position: earlier tensors first, then
    lower flat index. Together the masks mark exactly ``k`` kept entries.

    Args:
        scores (Sequence[Tensor]): Score tensors (any shapes, one dtype).
        k (int): Entries to keep, ``0 <= k <= total numel``.
        pruned (bool): Return the complement, True where an entry is *not*
            among the k largest. Cheaper than inverting keep-masks.
            Defaults to False.

    Returns:
        list[Tensor]: One bool mask per score tensor, same shapes.
    """
    total = sum(s.numel() for s in scores)
    if not 0 <= k <= total:
        raise ValueError(f'k must be in [0, {total}], but got {k}')
    if k in (0, total):
        value = (k == total) != pruned  # all kept, or all pruned
        return [torch.full_like(s, value, dtype=torch.bool) for s in scores]
    flats = [s.reshape(-1) for s in scores]
    found = _kth_largest(flats, k)
    if isinstance(found, _Bracketed):
        masks = _masks_from_bracket(found, k, pruned)
        return [m.view_as(s) for m, s in zip(masks, scores)]
    threshold, above = found
    if pruned:
        masks = [f <= threshold for f in flats]
        if above is None:
            above = total - sum(int(torch.count_nonzero(m)) for m in masks)
    else:
        masks = [f > threshold for f in flats]
        if above is None:
            above = sum(int(torch.count_nonzero(m)) for m in masks)
    remaining = k - above  # entries equal to the threshold still to keep
    for flat, mask in zip(flats, masks):
        if remaining <= 0:
            break
        take = flat_nonzero(flat == threshold)[:remaining]
        mask.index_fill_(0, take, not pruned)
        remaining -= take.numel()
    assert remaining == 0, 'internal error: tie-break under-filled the mask'
    return [m.view_as(s) for m, s in zip(masks, scores)]


def topk_positions(score: torch.Tensor,
                   k: int,
                   eligible: Optional[torch.Tensor] = None,
                   num_eligible: Optional[int] = None) -> torch.Tensor:
    """Flat positions of the ``k`` largest scores among the ``eligible``
    entries of one tensor, in increasing order; ties keep the lower
    position, as :func:`topk_masks` does.

    Only the entries above a sampled lower bound are gathered and ranked, so
    a small ``k`` (the weights RigL and SET grow) costs one comparison per
    score rather than a full selection.

    Args:
        score (Tensor): Scores, any shape.
        k (int): How many to pick, ``0 <= k <= num_eligible``.
        eligible (Tensor, optional): Bool, shaped like ``score``: the
            entries that may be picked. Defaults to all.
        num_eligible (int, optional): ``eligible``'s count, when known.

    Returns:
        Tensor: int64 flat positions, ``k`` of them.
    """
    flat = score.reshape(-1)
    n = flat.numel()
    ok = None if eligible is None else eligible.reshape(-1)
    if num_eligible is None:
        num_eligible = n if ok is None else int(torch.count_nonzero(ok))
    if not 0 <= k <= num_eligible:
        raise ValueError(f'k must be in [0, {num_eligible}], but got {k}')

    def among(idx: torch.Tensor) -> torch.Tensor:
        picked = topk_masks([flat.index_select(0, idx)], k)[0]
        return idx.index_select(0, flat_nonzero(picked))

    if k == 0:
        return torch.zeros(0, dtype=torch.long, device=flat.device)
    if ok is None and n < _BRACKET_MIN_NUMEL:
        return flat_nonzero(topk_masks([flat], k)[0])
    if num_eligible < _BRACKET_MIN_NUMEL or 4 * num_eligible < n:
        return among(flat_nonzero(ok))
    # A fixed-seed sample of the eligible scores bounds the k-th largest
    # from below; when at least k entries are above the bound, they hold
    # the k largest.
    gen = torch.Generator().manual_seed(0)
    size = min(_SAMPLE_MAX, max(_SAMPLE_MIN, num_eligible >> 6))
    where = _sample_positions(n, size * n // num_eligible, gen).to(flat.device)
    if ok is not None:
        where = where.index_select(0, flat_nonzero(ok.index_select(0, where)))
    sample = flat.index_select(0, where)
    m = sample.numel()
    if m:
        q = 1.0 - k / num_eligible
        margin = 6.0 * math.sqrt(max(q * (1 - q), 1.0 / m) / m) + 4.0 / m
        rank = min(m - 1, max(0, int((q - margin) * m)))
        above = flat > torch.kthvalue(sample, rank + 1).values
        if ok is not None:
            above.logical_and_(ok)
        idx = flat_nonzero(above)
        if idx.numel() >= k:
            return among(idx)
    if ok is None:
        return flat_nonzero(topk_masks([flat], k)[0])
    return among(flat_nonzero(ok))


def topk_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask of the ``k`` largest entries of one tensor (see
    :func:`topk_masks`)."""
    return topk_masks([score], k)[0]


def nm_mask(score: torch.Tensor, n: int, m: int, dim: int = 1) -> torch.Tensor:
    """N:M keep-mask: in every run of ``m`` consecutive weights along the
    input dimension (``dim``, 1 by default), keep the ``n`` largest scores.

    For a conv weight ``(out, in, *kernel)`` the runs go along ``in`` at a
    fixed kernel position, as sparse tensor cores expect; a transposed
    conv's weight ``(in, out / groups, *kernel)`` has its input on dim 0.
    Ties keep the lower input index.

    Args:
        score (Tensor): Scores shaped like the weight, at least 2-D.
        n (int): Kept per run.
        m (int): Run length; ``score.shape[dim]`` must divide by it.
        dim (int): The input dimension. Defaults to 1.

    Returns:
        Tensor: Bool keep-mask shaped like ``score``.
    """
    if score.dim() < 2:
        raise ValueError(f'N:M needs a weight of at least 2 dims, got shape '
                         f'{tuple(score.shape)}')
    if score.shape[dim] % m:
        raise ValueError(
            f'N:M with M={m} needs the input dimension (dim {dim}) to divide '
            f'by {m}, got shape {tuple(score.shape)}')
    moved = score.movedim(dim, -1)  # (out, *kernel, in)
    runs = moved.reshape(-1, m)
    order = torch.sort(runs, dim=1, descending=True, stable=True).indices
    keep = torch.zeros_like(runs, dtype=torch.bool)
    keep.scatter_(1, order[:, :n], True)
    return keep.view(moved.shape).movedim(-1, dim).contiguous()
