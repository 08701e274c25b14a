# Copyright (c) gap_mm contributors. All rights reserved.
"""The sparsity state a checkpoint carries: written and read in one place.

Every sparse-training hook of gap_mm saves, next to MMEngine's own keys, one
entry ``checkpoint['gap_state']``:

.. code-block:: python

    dict(
        version=2,
        hook='GaPHook',          # the hook class that wrote it
        step=1200,               # the step (iteration or epoch) it resumes at
        by_epoch=False,
        sparsifier=dict(         # Sparsifier.state_dict()
            masks={name: packed keep-mask, 1 bit per weight},
            num_keep={name: int},
            block_keep={name: [int, ...]},  # only for a weight of several
                                            # blocks (an attention's q, k, v)
            partitions=[[name, ...], ...]),
        dense_partitions=[1],    # partitions without a mask at ``step``
        method={...})            # the hook's own state (may be empty)

The weights in ``checkpoint['state_dict']`` are already 0 wherever a mask
prunes them, so plain mmdet / mmdet3d need none of this. Version 1 (written
before the method key existed) is read as version 2 with
``hook='GaPHook'`` and an empty ``method``, so old checkpoints still resume.
"""
from typing import Any, Dict, List, Mapping, Optional

import torch

from gap_mm.errors import GaPConfigError
from gap_mm.sparsity.packing import unpack_mask

#: Checkpoint key under which the sparsity state lives.
CKPT_KEY = 'gap_state'
#: The layout written by :func:`write_state`.
STATE_VERSION = 2
_READABLE_VERSIONS = (1, 2)


class CheckpointStateError(GaPConfigError):
    """A checkpoint's ``gap_state`` that cannot be read; the message says
    what is wrong."""


def write_state(checkpoint: dict,
                *,
                hook: str,
                step: int,
                by_epoch: bool,
                sparsifier: Mapping[str, Any],
                dense_partitions: List[int],
                method: Optional[Mapping[str, Any]] = None) -> dict:
    """Put the sparsity state into ``checkpoint`` (in place) and return it.

    Args:
        checkpoint (dict): The checkpoint MMEngine is about to save.
        hook (str): Class name of the hook that owns the state.
        step (int): The step the checkpoint resumes at.
        by_epoch (bool): Whether ``step`` counts epochs.
        sparsifier (Mapping): ``Sparsifier.state_dict()``.
        dense_partitions (list[int]): Partitions without a mask.
        method (Mapping, optional): The hook's own state, plain data and
            tensors only (it is loaded with ``weights_only=True``).
    """
    state = dict(
        version=STATE_VERSION,
        hook=hook,
        step=int(step),
        by_epoch=bool(by_epoch),
        sparsifier=dict(sparsifier),
        dense_partitions=sorted(int(k) for k in dense_partitions),
        method=dict(method or {}))
    checkpoint[CKPT_KEY] = state
    return state


def read_state(checkpoint: Mapping[str, Any],
               where: str = 'the checkpoint') -> Optional[Dict[str, Any]]:
    """The checkpoint's sparsity state in the current layout, or None when
    it has none (a dense checkpoint, or one from another tool).

    Raises:
        CheckpointStateError: If the state is of an unknown version or not
            of the documented layout.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointStateError(
            f'{where} is not a checkpoint dict but a '
            f'{type(checkpoint).__name__}')
    state = checkpoint.get(CKPT_KEY)
    if state is None:
        return None
    if not isinstance(state, Mapping):
        raise CheckpointStateError(
            f'{where}: {CKPT_KEY!r} must be a dict, but is a '
            f'{type(state).__name__}')
    version = state.get('version')
    if version not in _READABLE_VERSIONS:
        raise CheckpointStateError(
            f'{where}: unsupported {CKPT_KEY} version {version!r}; this '
            f'gap_mm reads versions {list(_READABLE_VERSIONS)}')
    sparsifier = state.get('sparsifier')
    if not isinstance(sparsifier, Mapping) or not isinstance(
            sparsifier.get('masks', {}), Mapping):
        raise CheckpointStateError(
            f'{where}: {CKPT_KEY}["sparsifier"] must be a dict with a '
            f'"masks" dict, but got {type(sparsifier).__name__}')
    out = dict(state)
    if version == 1:
        out.update(hook='GaPHook', method={})
    out['version'] = STATE_VERSION
    out.setdefault('method', {})
    out.setdefault('dense_partitions', [])
    return out


def packed_masks(state: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The packed keep-masks of a state from :func:`read_state` ({} for
    None)."""
    if state is None:
        return {}
    return dict(state['sparsifier'].get('masks') or {})


def keep_masks(state: Optional[Mapping[str, Any]]) -> Dict[str, torch.Tensor]:
    """The keep-masks (bool, True = kept) of a state, by parameter name."""
    return {
        name: unpack_mask(entry, name)
        for name, entry in packed_masks(state).items()
    }


def partitions(state: Optional[Mapping[str, Any]]) -> Optional[List[List]]:
    """The partitions a state was trained with, or None."""
    if state is None:
        return None
    groups = state['sparsifier'].get('partitions')
    return None if groups is None else [list(g) for g in groups]


def verify_masked_zero(state_dict: Mapping[str, torch.Tensor],
                       state: Optional[Mapping[str, Any]]) -> Dict[str, Dict]:
    """Check that every weight a saved mask prunes is exactly 0.

    Args:
        state_dict (Mapping[str, torch.Tensor]): The model's weights.
        state (Mapping, optional): From :func:`read_state`.

    Returns:
        dict: For each masked parameter, ``numel``, ``masked`` (pruned
        positions) and ``nonzero_masked`` (pruned positions whose weight is
        not 0, NaN included). The weights agree with the masks when every
        ``nonzero_masked`` is 0.

    Raises:
        CheckpointStateError: If a mask names a parameter the state_dict
            lacks, or has another shape.
    """
    report: Dict[str, Dict] = {}
    for name, keep in keep_masks(state).items():
        if name not in state_dict:
            raise CheckpointStateError(
                f'{CKPT_KEY} has a mask for {name!r}, which is not in the '
                f'state_dict')
        weight = state_dict[name]
        if tuple(keep.shape) != tuple(weight.shape):
            raise CheckpointStateError(
                f'the mask of {name!r} has shape {list(keep.shape)}, but the '
                f'weight has {list(weight.shape)}')
        pruned = ~keep.to(weight.device)
        report[name] = dict(
            numel=weight.numel(),
            masked=int(pruned.sum()),
            nonzero_masked=int((weight.detach()[pruned] != 0).sum()))
    return report
