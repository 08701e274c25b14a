# Copyright (c) gap_mm authors. All rights reserved.
from .part_seg_metric import PartSegMetric, shape_part_iou

__all__ = ['PartSegMetric', 'shape_part_iou']
