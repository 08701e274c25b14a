# Copyright (c) gap_mm contributors. All rights reserved.
"""gap_mm: scheduled grow-and-prune (GaP) sparse training for OpenMMLab.

``import gap_mm`` registers everything: the hook and optimizer wrappers in
MMEngine's root registries, so every ``default_scope`` finds them.
"""
from . import engine, schedules, sparsity  # noqa: F401
from .engine import GaPAmpOptimWrapper, GaPHook, GaPOptimWrapper
from .version import __version__

__all__ = ['GaPAmpOptimWrapper', 'GaPHook', 'GaPOptimWrapper', '__version__']
