# Copyright (c) gap_mm contributors. All rights reserved.
"""What is pruned and how: pure torch, no Runner.

* :mod:`.selection`, :mod:`.output_layers`: which parameters are
  prunable, and the output layers of heads that stay dense by default;
* :mod:`.distribution`, :mod:`.partition`: per-layer targets, partitions;
* :mod:`.topk`, :mod:`.scores`: exact top-k selection and importances;
* :mod:`.masks`, :mod:`.packing`: int8 keep words, 1-bit packing;
* :mod:`.drop_grow`: RigL's and SET's mask updates;
* :mod:`.optim_state`: optimizer state at prune and grow events;
* :mod:`.sparsifier`: :class:`Sparsifier`, the masks and their events;
* :mod:`.penalty`, :mod:`.coupling`: GReg's growing penalty, and the layers
  filter-wise pruning must leave out;
* :mod:`.channels`: the channel groups structured pruning removes whole.
"""
from .channels import (ChannelGroup, GROUP_RULES, channel_followers,
                       find_channel_groups)
from .distribution import (DISTRIBUTIONS, check_sparsity, erk_keep,
                           global_keep, match_overrides, uniform_keep)
from .drop_grow import drop_and_grow, drop_grow_positions, num_to_move
from .masks import keep_word, num_pruned, zero_pruned_
from .optim_state import (REGROWN_SECOND_MOMENTS, SECOND_MOMENT_KEYS,
                          init_regrown_state_, reset_optimizer_state_,
                          zero_optimizer_state_)
from .packing import pack_mask, unpack_mask
from .partition import auto_partitions, build_partitions, regex_partitions
from .report import (LARGE_DENSE_SHARE, dense_weights, format_layer_table,
                     format_partitions, format_selection)
from .scores import MagnitudeScore, RandomScore, build_score
from .output_layers import OUTPUT_LAYERS, output_layer_attrs, output_weights
from .selection import (DEFAULT_PRUNABLE_TYPES, FROZEN_WHY, PLAIN_LAYOUT,
                        PrunableParams, WeightLayout, compile_regexes,
                        layer_weights, resolve_module_types, select_prunable)
from .sparsifier import MagnitudeSparsifier, Sparsifier, parse_pattern
from .coupling import RESIDUAL_BLOCKS, coupled_filter_params
from .penalty import (MODES, GrowingPenalty, check_mode, expand_filters,
                      filter_scores, layer_sparsity, magnitude_ratio,
                      pick_pruned)
from .topk import (flat_nonzero, kth_largest, nm_mask, num_kept, topk_mask,
                   topk_masks, topk_positions)

__all__ = [
    'ChannelGroup', 'GROUP_RULES', 'channel_followers', 'find_channel_groups',
    'DEFAULT_PRUNABLE_TYPES', 'FROZEN_WHY', 'LARGE_DENSE_SHARE',
    'OUTPUT_LAYERS', 'PLAIN_LAYOUT', 'PrunableParams', 'WeightLayout',
    'dense_weights', 'format_partitions', 'format_selection',
    'layer_weights', 'output_layer_attrs', 'output_weights',
    'DISTRIBUTIONS', 'GrowingPenalty', 'MODES',
    'MagnitudeScore', 'RESIDUAL_BLOCKS', 'check_mode', 'coupled_filter_params',
    'expand_filters', 'filter_scores', 'layer_sparsity', 'magnitude_ratio',
    'pick_pruned', 'MagnitudeSparsifier', 'REGROWN_SECOND_MOMENTS',
    'RandomScore', 'SECOND_MOMENT_KEYS', 'Sparsifier', 'auto_partitions',
    'build_partitions', 'build_score', 'check_sparsity', 'compile_regexes',
    'drop_and_grow', 'drop_grow_positions', 'erk_keep', 'flat_nonzero',
    'format_layer_table', 'global_keep', 'init_regrown_state_', 'keep_word',
    'kth_largest', 'match_overrides', 'nm_mask', 'num_kept', 'num_pruned',
    'num_to_move', 'pack_mask', 'parse_pattern', 'regex_partitions',
    'reset_optimizer_state_', 'resolve_module_types', 'select_prunable',
    'topk_mask', 'topk_masks', 'topk_positions', 'uniform_keep',
    'unpack_mask', 'zero_optimizer_state_', 'zero_pruned_'
]
