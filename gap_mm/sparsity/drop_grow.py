# Copyright (c) gap_mm contributors. All rights reserved.
"""Drop-and-grow mask updates (RigL, SET): pure tensor logic."""
import torch

from .topk import topk_masks


def num_to_move(num_active: int, num_inactive: int, fraction: float) -> int:
    """``k = round(fraction * num_active)``, at most what can be regrown."""
    return max(
        0, min(int(round(fraction * num_active)), num_active, num_inactive))


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
