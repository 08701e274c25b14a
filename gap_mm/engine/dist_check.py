# Copyright (c) gap_mm contributors. All rights reserved.
"""Cross-rank check that every rank holds the same GaP masks."""
from typing import Optional

import torch
from mmengine import dist

from gap_mm.sparsity import Sparsifier


class MaskDivergenceError(RuntimeError):
    """Ranks computed different masks; training on would silently mix
    models."""


def verify_masks_across_ranks(sparsifier: Sparsifier,
                              where: str = '',
                              group: Optional[object] = None) -> None:
    """Compare the masks' digests of all ranks; raise on any mismatch.

    Each rank hashes its bit-packed masks (BLAKE2b, see
    :meth:`~gap_mm.sparsity.Sparsifier.fingerprint`); one all-reduce of
    ``2 x 2 x L`` int64 values (max of the digests and max of their
    negation) tells every rank whether all agree, so it is cheap enough for
    every event. Every rank sees the same reduced values and so every rank
    raises together, without a hang. Does nothing outside distributed training.

    Raises:
        MaskDivergenceError: Naming the first layers that differ.
    """
    if dist.get_world_size(group) <= 1:
        return
    local = sparsifier.fingerprint()
    both = torch.stack([local, -local])
    dist.all_reduce(both, op='max', group=group)
    high, low = both[0], -both[1]
    differs = (high != low).any(dim=1).nonzero().flatten().tolist()
    if differs:
        names = [sparsifier.names[i] for i in differs]
        raise MaskDivergenceError(
            f'GaP masks differ across ranks{" " + where if where else ""} in '
            f'{len(names)} layer(s): {names[:5]}'
            f'{" ..." if len(names) > 5 else ""}. The ranks no longer hold '
            f'the same weights (non-deterministic ops, a rank-dependent '
            f'seed, or a model not wrapped in DDP); stopping rather than '
            f'training diverged replicas.')
