# Copyright (c) gap_mm authors. All rights reserved.
from .shapenet_part_dataset import (SHAPENET_PART_CATEGORIES,
                                    SHAPENET_PART_CATEGORY_PARTS,
                                    SHAPENET_PART_NAMES, SHAPENET_PART_SYNSETS,
                                    ShapeNetPartDataset,
                                    load_shapenet_part_txt)
from .transforms import (LoadShapeNetPartPoints, NormalizePointsToUnitSphere,
                         PackPartSegInputs, PartPointSample,
                         RandomAnisotropicScale, RandomPointJitter,
                         RandomPointTranslate)

__all__ = [
    'ShapeNetPartDataset', 'load_shapenet_part_txt',
    'SHAPENET_PART_CATEGORIES', 'SHAPENET_PART_SYNSETS',
    'SHAPENET_PART_CATEGORY_PARTS', 'SHAPENET_PART_NAMES',
    'LoadShapeNetPartPoints', 'PartPointSample', 'NormalizePointsToUnitSphere',
    'RandomAnisotropicScale', 'RandomPointTranslate', 'RandomPointJitter',
    'PackPartSegInputs'
]
