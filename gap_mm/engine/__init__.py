# Copyright (c) gap_mm contributors. All rights reserved.
"""Where sparse training plugs into MMEngine: hooks and optimizer
wrappers."""
from .dist_check import MaskDivergenceError, verify_masks_across_ranks
from .hooks import (BaseSparsityHook, DropGrowHook, GaPHook, GMPHook,
                    RigLHook, SETHook)
from .optimizers import (GaPAmpOptimWrapper, GaPMaskingMixin,
                         GaPOptimWrapper, StepStage)

__all__ = [
    'BaseSparsityHook', 'DropGrowHook', 'GMPHook', 'GaPAmpOptimWrapper',
    'GaPHook', 'GaPMaskingMixin', 'GaPOptimWrapper', 'MaskDivergenceError',
    'RigLHook', 'SETHook', 'StepStage', 'verify_masks_across_ranks'
]
