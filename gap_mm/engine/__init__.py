# Copyright (c) gap_mm contributors. All rights reserved.
"""Where sparse training plugs into MMEngine: hooks and optimizer
wrappers."""
from .checkpointing import AtomicCheckpointHook
from .dist_check import MaskDivergenceError, verify_masks_across_ranks
from .hooks import (EVENTS_FILE, BaseMethodHook, BaseSparsityHook,
                    DropGrowHook, GaPHook, GMPHook, GRegHook, RigLHook,
                    SCSHook, SETHook)
from .parallel_gap import CombineExchange, ParallelGaP, covered_tensors
from .rank_groups import GroupLayout, RankGroups, group_layout
from .samplers import GroupDefaultSampler, GroupInfiniteSampler
from .optimizers import (GaPAmpOptimWrapper, GaPMaskingMixin, GaPOptimWrapper,
                         StepStage)

__all__ = [
    'AtomicCheckpointHook', 'EVENTS_FILE', 'BaseMethodHook',
    'BaseSparsityHook', 'CombineExchange', 'DropGrowHook', 'GMPHook',
    'GRegHook', 'GaPAmpOptimWrapper', 'GaPHook', 'GaPMaskingMixin',
    'GaPOptimWrapper', 'GroupDefaultSampler', 'GroupInfiniteSampler',
    'GroupLayout', 'MaskDivergenceError', 'ParallelGaP', 'RankGroups',
    'RigLHook', 'SCSHook', 'SETHook', 'StepStage', 'covered_tensors',
    'group_layout', 'verify_masks_across_ranks'
]
