# Copyright (c) gap_mm contributors. All rights reserved.
"""Checkpoints: the one safe loader and the one sparsity-state layout."""
from .loading import (PUBLISH_TOOL, CheckpointReadError, load_checkpoint,
                      plain_load_note, publish_command, split_checkpoint)
from .recovery import (check_checkpoint_file, checkpoint_problem,
                       find_resumable_checkpoint, prepare_checkpoint_loading,
                       restores_method_state)
from .state import (CKPT_KEY, STATE_VERSION, CheckpointStateError,
                    keep_masks, packed_masks, partitions, read_state,
                    verify_masked_zero, write_state)
from .weights_match import WeightsMatch, check_weights_match, match_weights

__all__ = [
    'CKPT_KEY', 'PUBLISH_TOOL', 'STATE_VERSION', 'CheckpointReadError',
    'CheckpointStateError', 'plain_load_note', 'publish_command',
    'check_checkpoint_file', 'checkpoint_problem', 'find_resumable_checkpoint',
    'prepare_checkpoint_loading', 'restores_method_state',
    'keep_masks', 'load_checkpoint', 'packed_masks', 'partitions',
    'read_state', 'split_checkpoint', 'verify_masked_zero', 'write_state',
    'WeightsMatch', 'check_weights_match', 'match_weights'
]
