# Copyright (c) gap_mm contributors. All rights reserved.
"""Drop-and-grow mask updates (RigL, SET): pure tensor logic."""
from typing import Tuple

import torch

from .topk import flat_nonzero, topk_masks, topk_positions


def num_to_move(num_active: int, num_inactive: int, fraction: float) -> int:
    """``k = round(fraction * num_active)``, at most what can be regrown."""
    return max(
        0, min(int(round(fraction * num_active)), num_active, num_inactive))


@torch.no_grad()
def drop_grow_positions(
        keep: torch.Tensor, active: torch.Tensor, drop_values: torch.Tensor,
        grow_score: torch.Tensor,
        k: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What one drop-and-grow update of a layer drops and grows.

    Args:
        keep (Tensor): Flat bool, True where active now.
        active (Tensor): int64, ``keep``'s True positions, increasing.
        drop_values (Tensor): The drop score at those positions (larger
            survives).
        grow_score (Tensor): The grow score of every position (larger is
            grown), any shape.
        k (int): Weights to move, ``0 <= k <= min(#active, #inactive)``.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``(pruned, dropped, grown)``: the new
        flat bool pruned mask, and the int64 flat positions dropped and
        grown, ``k`` each, increasing (a dropped position may be grown
        again).
    """
    survive = topk_masks([drop_values], active.numel() - k)[0]
    dropped = active.index_select(0, flat_nonzero(survive.logical_not_()))
    pruned = keep.logical_not()
    pruned.index_fill_(0, dropped, True)
    grown = topk_positions(grow_score, k, pruned,
                           keep.numel() - active.numel() + k)
    pruned.index_fill_(0, grown, False)
    return pruned, dropped, grown


@torch.no_grad()
def drop_and_grow(pruned: torch.Tensor, drop_score: torch.Tensor,
                  grow_score: torch.Tensor, k: int) -> torch.Tensor:
    """The new pruned mask of one layer after moving ``k`` weights.

    Of the active positions (``~pruned``), the ``k`` with the smallest
    ``drop_score`` are dropped; of the positions inactive after that drop
    (those just dropped included, as in RigL's reference), the ``k`` with
    the largest ``grow_score`` become active. The number of active weights
    is unchanged, exactly; ties are broken by position (lower flat index
    first), as everywhere in gap_mm.

    Args:
        pruned (Tensor): Bool, True where pruned now.
        drop_score (Tensor): Importance of active weights (``|w|``); larger
            survives.
        grow_score (Tensor): Importance of inactive weights (``|grad|`` for
            RigL, random for SET); larger is grown.
        k (int): Weights to move, ``0 <= k <= min(#active, #inactive)``.

    Returns:
        Tensor: Bool pruned mask of the same shape.
    """
    flat = pruned.reshape(-1)
    keep = flat.logical_not()
    active = flat_nonzero(keep)
    inactive_before = flat.numel() - active.numel()
    if not 0 <= k <= min(active.numel(), inactive_before):
        raise ValueError(
            f'k={k} must be in [0, min(active {active.numel()}, inactive '
            f'{inactive_before})]')
    if k == 0:
        return pruned.clone()
    new_pruned = drop_grow_positions(
        keep, active,
        drop_score.reshape(-1).index_select(0, active), grow_score, k)[0]
    return new_pruned.view_as(pruned)
