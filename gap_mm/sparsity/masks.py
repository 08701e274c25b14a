# Copyright (c) gap_mm contributors. All rights reserved.
"""Masks as int8 keep words: the bit operations every method shares.

A mask is stored as one int8 *keep word* per weight, -1 (all bits set) where
the weight is kept and 0 where it is pruned, and applied as a bitwise AND on
the integer view of a floating tensor (:func:`zero_pruned_`): 1 byte per
weight, exact, and on the CPU faster than ``masked_fill_`` or a multiply by
a bool mask (see ``benchmarks/README.md``). A pruned value becomes +0.0,
never -0.0.
"""
import torch

# Integer dtype of the same width, to AND a float tensor with a keep word.
_INT_OF_WIDTH = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
# On the CPU, torch widens the int8 word to the tensor's width in a
# temporary before the AND; in slices of this many entries that temporary
# stays in the cache instead of making a second pass through memory.
_AND_SLICE = 1 << 17


def keep_word(pruned: torch.Tensor) -> torch.Tensor:
    """int8 keep word from a bool pruned-mask: -1 where kept, 0 where
    pruned (the mask's bytes, 1 or 0, minus 1)."""
    return pruned.view(torch.int8) - 1


def keep_of(word: torch.Tensor) -> torch.Tensor:
    """Bool keep-mask (True where kept) of a keep word, a new tensor."""
    return word.neg().view(torch.bool)


def pruned_of(word: torch.Tensor) -> torch.Tensor:
    """Bool pruned-mask (True where pruned) of a keep word, a new
    tensor."""
    return (word + 1).view(torch.bool)


@torch.no_grad()
def zero_pruned_(tensor: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
    """Zero ``tensor`` in place where ``word`` is 0, keep it bit for bit
    where ``word`` is -1.

    A floating tensor is ANDed through its integer view (sign-extending the
    int8 word to the element width); other dtypes fall back to
    ``masked_fill_``.
    """
    int_dtype = _INT_OF_WIDTH.get(tensor.element_size())
    if tensor.is_floating_point() and int_dtype is not None:
        bits = tensor.view(int_dtype)
        if (tensor.device.type == 'cpu' and tensor.numel() > _AND_SLICE
                and bits.is_contiguous() and word.is_contiguous()
                and word.shape == tensor.shape):
            bits, word = bits.view(-1), word.view(-1)
            for start in range(0, bits.numel(), _AND_SLICE):
                bits[start:start + _AND_SLICE].bitwise_and_(
                    word[start:start + _AND_SLICE])
        else:
            bits.bitwise_and_(word)
    else:
        tensor.masked_fill_(word == 0, 0)
    return tensor


def num_pruned(word: torch.Tensor) -> int:
    """Number of pruned positions of a keep word."""
    return word.numel() - int(torch.count_nonzero(word))
