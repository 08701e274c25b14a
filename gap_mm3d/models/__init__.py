# Copyright (c) gap_mm contributors. All rights reserved.
"""PointNet++ part segmentation, registered in mmdet3d's ``MODELS``.

The set-abstraction and feature-propagation modules call the point
operators of :mod:`gap_mm3d.ops`, so the network trains and evaluates on the
CPU as well as on CUDA (where mmcv's kernels run).
"""
from .part_seg_head import PartSegHead
from .pointnet2_fp_module import PointNet2FPModule
from .pointnet2_part_seg import FP_PRESETS, SA_PRESETS, PointNet2PartSeg
from .pointnet2_sa_module import PointNet2SAModule

__all__ = [
    'PartSegHead', 'PointNet2FPModule', 'PointNet2PartSeg',
    'PointNet2SAModule', 'SA_PRESETS', 'FP_PRESETS'
]
