# Copyright (c) gap_mm contributors. All rights reserved.
"""Where GaP plugs into MMEngine: hooks and optimizer wrappers."""
from .dist_check import MaskDivergenceError, verify_masks_across_ranks
from .hooks import GaPHook
from .optimizers import GaPAmpOptimWrapper, GaPMaskingMixin, GaPOptimWrapper

__all__ = [
    'GaPAmpOptimWrapper', 'GaPHook', 'GaPMaskingMixin', 'GaPOptimWrapper',
    'MaskDivergenceError', 'verify_masks_across_ranks'
]
