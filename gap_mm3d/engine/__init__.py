# Copyright (c) gap_mm contributors. All rights reserved.
"""Hooks of the point-cloud tasks, registered in mmdet3d's ``HOOKS``."""
from .hooks import PartSegVisualizationHook

__all__ = ['PartSegVisualizationHook']
