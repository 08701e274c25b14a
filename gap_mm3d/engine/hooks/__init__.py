# Copyright (c) gap_mm contributors. All rights reserved.
from .part_seg_vis_hook import PartSegVisualizationHook

__all__ = ['PartSegVisualizationHook']
