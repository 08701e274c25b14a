# Copyright (c) gap_mm contributors. All rights reserved.
"""Where sparse training plugs into MMEngine: hooks and optimizer
wrappers."""
from .dist_check import MaskDivergenceError, verify_masks_across_ranks
from .hooks import BaseSparsityHook, GaPHook
from .optimizers import (GaPAmpOptimWrapper, GaPMaskingMixin,
                         GaPOptimWrapper, StepStage)

__all__ = [
    'BaseSparsityHook', 'GaPAmpOptimWrapper', 'GaPHook', 'GaPMaskingMixin',
    'GaPOptimWrapper', 'MaskDivergenceError', 'StepStage',
    'verify_masks_across_ranks'
]
