# Copyright (c) gap_mm contributors. All rights reserved.
"""gap_mm: scheduled grow-and-prune (GaP) sparse training for OpenMMLab.

``import gap_mm`` registers everything: the hook and optimizer wrappers in
MMEngine's root registries, so every ``default_scope`` finds them, and the
ShapeNet part dataset, transforms, metric and the PointNet++ part
segmentation model in mmdet3d's. It also
allow-lists, for ``torch.load(weights_only=True)``, exactly the MMEngine
classes a checkpoint holds, so that ``--resume`` works under torch >= 2.6
without ever switching ``weights_only`` off.
"""
from . import engine, schedules, sparsity  # noqa: F401
from . import datasets, evaluation, models  # noqa: F401  (mmdet3d)
from .engine import GaPAmpOptimWrapper, GaPHook, GaPOptimWrapper
from .utils.safe_load import allow_mmengine_checkpoint_globals
from .version import __version__

allow_mmengine_checkpoint_globals()

__all__ = ['GaPAmpOptimWrapper', 'GaPHook', 'GaPOptimWrapper', '__version__']
