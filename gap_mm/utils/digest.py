# Copyright (c) gap_mm authors. All rights reserved.
"""A digest of a tensor's bytes, for telling whether ranks hold the same
values, at about two reads of memory.

The bytes are read as int64 words twice: aligned, and shifted by 4 bytes (a
zero-copy view), so that every bit of the tensor lies in the low half of a
word of one of the two. Each row of :data:`ROW` words is summed with fixed
pseudo-random odd int64 weights modulo 2^64 (one matrix-vector product per
block of rows, exact and independent of the order of summation); the row
sums, the last 4 bytes, the dtype and the shape then go through BLAKE2b.
A tensor whose size is not a multiple of 8 bytes (or that is not on the
CPU) is read once instead, as 4-, 2- or 1-byte words widened to int64. A
view at an unaligned offset is read from an aligned copy, so that the digest
depends on the values only.

Two tensors whose bytes differ get the same digest only if the weighted sums
of the differing rows agree modulo 2^64 in both readings: the lowest
differing bit lies in the low half of some word, so its word differs by less
than 2^32 in that reading, and with odd 64-bit weights the chance is about
2^-33 for the fixed weights, far less for a difference spread over a row. A
checksum against accidents (a missed copy, a wrong index), not against an
adversary.
"""
import hashlib
from typing import Dict, List, Optional

import numpy as np
import torch

#: Words per row.
ROW = 1 << 12
# Rows summed per matrix-vector product.
_BLOCK_ROWS = 64
_KEYS: Dict[torch.device, torch.Tensor] = {}


def _key(device: torch.device) -> torch.Tensor:
    """Row weights for the two readings: fixed odd int64 values, the same
    on every rank."""
    key = _KEYS.get(device)
    if key is None:
        gen = torch.Generator().manual_seed(0x6A09E667)
        key = torch.randint(
            -2**62, 2**62, (2, ROW), generator=gen, dtype=torch.int64)
        key = key.mul_(2).add_(1).to(device)  # odd
        _KEYS[device] = key
    return key


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes, flat, row-major."""
    data = tensor.detach()
    if not data.is_contiguous():
        data = data.contiguous()
    data = data.reshape(-1)
    if data.dtype == torch.bool:
        data = data.view(torch.uint8)
    return data.view(torch.uint8) if data.element_size() != 1 else data


def _weighted(rows: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Weighted int64 sums mod 2^64 of the rows of a 2-D int64 block."""
    if rows.device.type == 'cpu':
        return torch.mv(rows, key[:rows.shape[1]])
    return (rows * key[:rows.shape[1]]).sum(1)


def _row_sums(words: torch.Tensor, key: torch.Tensor,
              wide: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
    """Weighted sums of the rows of flat integer ``words`` (the last row
    may be short), widened to int64 in ``wide`` when they are narrower."""
    sums = []
    for start in range(0, words.numel(), _BLOCK_ROWS * ROW):
        block = words[start:start + _BLOCK_ROWS * ROW]
        full = block.numel() // ROW * ROW
        for rows in (block[:full].view(-1, ROW), block[full:].view(1, -1)):
            if rows.numel():
                if rows.dtype != torch.int64:
                    rows = wide[:rows.numel()].view(rows.shape).copy_(rows)
                sums.append(_weighted(rows, key))
    return sums


def tensor_digest(tensor: torch.Tensor) -> int:
    """A signed 64-bit digest of ``tensor``'s dtype, shape and bytes.

    Equal for equal tensors on any device of one kind; computed where the
    tensor lives (only the row sums, 1/4096 of the bytes, are copied to the
    CPU).
    """
    raw = _bytes(tensor)
    key = _key(raw.device)
    digest = hashlib.blake2b(
        f'{tensor.dtype}{tuple(tensor.shape)}'.encode(), digest_size=8)
    if raw.device.type == 'cpu' and raw.numel() >= 16 and raw.numel() % 8 == 0:
        if raw.data_ptr() % 8:  # a view at an odd offset: read a copy
            raw = raw.clone()
        buf = raw.numpy()
        aligned = raw.view(torch.int64)
        shifted = torch.from_numpy(
            np.frombuffer(
                buf, dtype=np.int64, offset=4, count=aligned.numel() - 1))
        sums, second = [], []
        step = _BLOCK_ROWS * ROW
        for start in range(0, aligned.numel(), step):
            # both readings of a block while it is in the cache
            sums += _row_sums(aligned[start:start + step], key[0])
            second += _row_sums(shifted[start:start + step], key[1])
        sums += second
        digest.update(buf[-4:].tobytes())
    else:
        if raw.data_ptr() % 4:
            raw = raw.clone()
        for dtype, size in ((torch.int32, 4), (torch.int16, 2)):
            if raw.numel() % size == 0:
                words = raw.view(dtype)
                break
        else:
            words = raw.view(torch.int8)
        wide = torch.empty(
            min(_BLOCK_ROWS * ROW, words.numel()),
            dtype=torch.int64,
            device=words.device)
        sums = _row_sums(words, key[0], wide)
    if sums:
        digest.update(torch.cat(sums).cpu().numpy())
    return int.from_bytes(digest.digest(), 'little', signed=True)
