# Copyright (c) gap_mm authors. All rights reserved.
"""A digest of a tensor's bytes, for telling whether ranks hold the same
values, at about a memory pass.

The bytes are read as 4-byte words (2- or 1-byte ones when the size asks for
it), in rows of :data:`ROW` words. Each row's words, sign-extended to int64,
are summed with fixed pseudo-random odd int64 weights modulo 2^64 (one
matrix-vector product per block of rows, exact and independent of the order
of summation); the row sums, the dtype and the shape then go through
BLAKE2b. Two tensors whose bytes differ get the same digest only if every
differing row's weighted sums agree modulo 2^64: for a difference of a few
words, a chance of about 2^-33 for the key (a difference in a word is below
2^32, the weights are odd 64-bit numbers), far less for a difference spread
over a row. A checksum against accidents (a missed copy, a wrong index), not
against an adversary.
"""
import hashlib
from typing import Dict

import torch

#: Words per row.
ROW = 1 << 12
# Rows summed per matrix-vector product: their int64 copy stays in the
# cache.
_BLOCK_ROWS = 32
_KEYS: Dict[torch.device, torch.Tensor] = {}


def _key(device: torch.device) -> torch.Tensor:
    """The row weights: fixed odd int64 values, the same on every rank."""
    key = _KEYS.get(device)
    if key is None:
        gen = torch.Generator().manual_seed(0x6A09E667)
        key = torch.randint(
            -2**62, 2**62, (ROW, ), generator=gen, dtype=torch.int64)
        key = key.mul_(2).add_(1).to(device)  # odd
        _KEYS[device] = key
    return key


def _words(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes as flat 4-, 2- or 1-byte integers."""
    data = tensor.detach()
    if not data.is_contiguous():
        data = data.contiguous()
    data = data.reshape(-1)
    if data.dtype == torch.bool:
        data = data.view(torch.uint8)
    raw = data.view(torch.uint8) if data.element_size() != 1 else data
    for dtype, size in ((torch.int32, 4), (torch.int16, 2)):
        if raw.numel() % size == 0 and raw.data_ptr() % size == 0:
            return raw.view(dtype)
    return raw.view(torch.int8)


def _row_sums(rows: torch.Tensor, key: torch.Tensor,
              wide: torch.Tensor) -> torch.Tensor:
    """Weighted int64 sum of each row of a 2-D block of words, widened in
    ``wide`` (an int64 buffer at least the block's size)."""
    wide = wide[:rows.numel()].view(rows.shape).copy_(rows)
    if wide.device.type == 'cpu':
        return torch.mv(wide, key[:wide.shape[1]])
    return (wide * key[:wide.shape[1]]).sum(1)


@torch.no_grad()
def tensor_digest(tensor: torch.Tensor) -> int:
    """A signed 64-bit digest of ``tensor``'s dtype, shape and bytes.

    Equal for equal tensors on any device of one kind; computed where the
    tensor lives (only the row sums, 1/4096 of the bytes, are copied to the
    CPU).
    """
    words = _words(tensor)
    key = _key(words.device)
    n_rows = words.numel() // ROW
    block = _BLOCK_ROWS * ROW
    wide = torch.empty(
        min(block, words.numel()), dtype=torch.int64, device=words.device)
    sums = []
    for start in range(0, n_rows * ROW, block):
        stop = min(start + block, n_rows * ROW)
        sums.append(_row_sums(words[start:stop].view(-1, ROW), key, wide))
    if words.numel() > n_rows * ROW:
        sums.append(_row_sums(words[n_rows * ROW:].view(1, -1), key, wide))
    digest = hashlib.blake2b(
        f'{tensor.dtype}{tuple(tensor.shape)}'.encode(), digest_size=8)
    if sums:
        digest.update(torch.cat(sums).cpu().numpy())
    return int.from_bytes(digest.digest(), 'little', signed=True)
