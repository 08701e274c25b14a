# Copyright (c) gap_mm contributors. All rights reserved.
from .gap_optim_wrapper import (GaPAmpOptimWrapper, GaPMaskingMixin,
                                GaPOptimWrapper, StepStage)

__all__ = [
    'GaPAmpOptimWrapper', 'GaPMaskingMixin', 'GaPOptimWrapper', 'StepStage'
]
