# Copyright (c) gap_mm contributors. All rights reserved.
"""Checkpoints: the one safe loader and the one sparsity-state layout."""
from .loading import CheckpointReadError, load_checkpoint, split_checkpoint
from .recovery import (check_checkpoint_file, checkpoint_problem,
                       find_resumable_checkpoint, prepare_checkpoint_loading,
                       restores_method_state)
from .state import (CKPT_KEY, STATE_VERSION, CheckpointStateError,
                    keep_masks, packed_masks, partitions, read_state,
                    verify_masked_zero, write_state)
from .weights_match import WeightsMatch, check_weights_match, match_weights

__all__ = [
    'CKPT_KEY', 'STATE_VERSION', 'CheckpointReadError', 'CheckpointStateError',
    'check_checkpoint_file', 'checkpoint_problem', 'find_resumable_checkpoint',
    'prepare_checkpoint_loading', 'restores_method_state',
    'keep_masks', 'load_checkpoint', 'packed_masks', 'partitions',
    'read_state', 'split_checkpoint', 'verify_masked_zero', 'write_state',
    'WeightsMatch', 'check_weights_match', 'match_weights'
]
