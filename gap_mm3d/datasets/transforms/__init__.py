# Copyright (c) gap_mm authors. All rights reserved.
from .point_transforms import (LoadShapeNetPartPoints,
                               NormalizePointsToUnitSphere, PackPartSegInputs,
                               PartPointSample, RandomAnisotropicScale,
                               RandomPointJitter, RandomPointTranslate)

__all__ = [
    'LoadShapeNetPartPoints', 'PartPointSample', 'NormalizePointsToUnitSphere',
    'RandomAnisotropicScale', 'RandomPointTranslate', 'RandomPointJitter',
    'PackPartSegInputs'
]
