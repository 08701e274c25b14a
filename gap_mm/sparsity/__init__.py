# Copyright (c) gap_mm contributors. All rights reserved.
"""What is pruned and how: pure torch, no Runner."""
from .distribution import (DISTRIBUTIONS, check_sparsity, erk_keep,
                           global_keep, match_overrides, uniform_keep)
from .packing import pack_mask, unpack_mask
from .report import format_layer_table
from .partition import auto_partitions, build_partitions, regex_partitions
from .selection import DEFAULT_PRUNABLE_TYPES, select_prunable
from .sparsifier import (REGROWN_SECOND_MOMENTS, SECOND_MOMENT_KEYS,
                         MagnitudeSparsifier, keep_word, parse_pattern,
                         zero_pruned_)
from .topk import kth_largest, nm_mask, num_kept, topk_mask, topk_masks

__all__ = [
    'DISTRIBUTIONS', 'DEFAULT_PRUNABLE_TYPES', 'MagnitudeSparsifier',
    'REGROWN_SECOND_MOMENTS', 'SECOND_MOMENT_KEYS',
    'format_layer_table', 'auto_partitions', 'build_partitions',
    'check_sparsity', 'erk_keep', 'global_keep', 'keep_word', 'kth_largest',
    'match_overrides', 'nm_mask', 'num_kept', 'pack_mask', 'parse_pattern',
    'regex_partitions', 'select_prunable', 'topk_mask', 'topk_masks',
    'uniform_keep', 'unpack_mask', 'zero_pruned_'
]
