# Copyright (c) gap_mm contributors. All rights reserved.
"""Exact top-k masks with a deterministic tie-break.

``keep = n - round(s * n)`` entries survive, always: values strictly above
the k-th largest score are kept, and among scores *equal* to it the ones that
come first (flat order, then list order) are kept. No percentile, no ``>``
on a quantile, so ties (all-zero regrown weights, duplicated values) never
change the count.

Finding the k-th largest of tens of millions of scores dominates a prune
event. :func:`kth_largest` brackets it with quantiles of a fixed-seed sample,
then selects exactly among the few values inside the bracket; it falls back
to a full :func:`torch.kthvalue` when the bracket misses. The result is exact
either way; the sample only decides how fast it is.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch

# Below this many scores a plain kthvalue is as fast as the bracket.
_BRACKET_MIN_NUMEL = 1 << 21
_SAMPLE_SIZE = 1 << 16


def num_kept(numel: int, sparsity: float) -> int:
    """Number of entries a tensor of ``numel`` keeps at ``sparsity``.

    Uses Python's :func:`round` (half to even) on ``sparsity * numel``.
    """
    return numel - int(round(sparsity * numel))


def kth_largest(scores: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """The k-th largest value (1-based) over several tensors, exactly.

    Args:
        scores (Sequence[Tensor]): Flat score tensors, all the same dtype.
        k (int): Rank, ``1 <= k <= total numel``.

    Returns:
        Tensor: 0-dim tensor holding the value.
    """
    return _kth_largest_and_ties(scores, k)[0]


def _kth_largest_and_ties(
    scores: Sequence[torch.Tensor], k: int
) -> Tuple[torch.Tensor, Optional[List[torch.Tensor]], Optional[int]]:
    """:func:`kth_largest`, plus, when the sampled bracket found it, the
    sorted flat positions per tensor of the entries equal to it and the
    number of entries above it (else None, None)."""
    total = sum(s.numel() for s in scores)
    if not 1 <= k <= total:
        raise ValueError(f'k must be in [1, {total}], but got {k}')
    if total >= _BRACKET_MIN_NUMEL:
        # Fixed-seed sample, proportional to each tensor's size.
        gen = torch.Generator().manual_seed(0)
        sample = torch.cat([
            s.reshape(-1)[torch.randint(
                s.numel(), (max(1,
                                _SAMPLE_SIZE * s.numel() // total), ),
                generator=gen)] for s in scores if s.numel()
        ])
        m = sample.numel()
        q = 1.0 - k / total  # quantile of the answer in ascending order
        margin = 6.0 * math.sqrt(max(q * (1 - q), 1.0 / m) / m) + 4.0 / m
        lo_rank = min(m - 1, max(0, int((q - margin) * m)))
        hi_rank = min(m - 1, max(0, int(math.ceil((q + margin) * m))))
        sorted_sample = torch.sort(sample).values
        lo, hi = sorted_sample[lo_rank], sorted_sample[hi_rank]

        # The answer t lies in [lo, hi] when fewer than k entries are above
        # hi and at least k are at or above lo. If at least k are above lo,
        # t is in (lo, hi]: select it exactly among those few entries, whose
        # positions also give the ties. Otherwise t == lo, a value so
        # frequent that it fills the bracket's lower end (the zeros of an
        # already sparse layer); its ties are found by an early-exit scan.
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
                rank = k - n_above_hi  # rank of the answer among ``inside``
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
    threshold, ties, above = _kth_largest_and_ties(flats, k)
    if pruned:
        masks = [f <= threshold for f in flats]
        if above is None:
            above = total - sum(int(torch.count_nonzero(m)) for m in masks)
    else:
        masks = [f > threshold for f in flats]
        if above is None:
            above = sum(int(torch.count_nonzero(m)) for m in masks)
    remaining = k - above  # entries equal to the threshold still to keep
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
