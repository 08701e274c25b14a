# Copyright (c) gap_mm contributors. All rights reserved.
"""Bit-packing of boolean masks (1 bit per weight in checkpoints)."""
from typing import Dict, Sequence

import numpy as np
import torch


def pack_mask(mask: torch.Tensor) -> Dict[str, object]:
    """Pack a bool mask into ``{'shape': [...], 'packed': uint8 tensor}``.

    Bits are in :func:`numpy.packbits` order (big-endian within a byte) over
    the row-major flattened mask.
    """
    flat = mask.detach().reshape(-1).cpu().numpy().astype(bool, copy=False)
    return dict(
        shape=list(mask.shape), packed=torch.from_numpy(np.packbits(flat)))


def unpack_mask(entry: Dict[str, object], name: str = '?') -> torch.Tensor:
    """Inverse of :func:`pack_mask`, with a clear error on a bad entry."""
    try:
        shape: Sequence[int] = [int(s) for s in entry['shape']]
        packed = entry['packed']
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f'mask entry for {name!r} must be a dict with '
                         f'"shape" and "packed", got {entry!r}') from err
    numel = int(np.prod(shape)) if shape else 1
    packed_np = torch.as_tensor(packed).cpu().numpy()
    if packed_np.dtype != np.uint8 or packed_np.size != (numel + 7) // 8:
        raise ValueError(
            f'mask entry for {name!r} holds {packed_np.size} bytes of '
            f'{packed_np.dtype}, but shape {list(shape)} needs '
            f'{(numel + 7) // 8} bytes of uint8')
    flat = np.unpackbits(packed_np, count=numel).astype(bool)
    return torch.from_numpy(flat).reshape(shape)
