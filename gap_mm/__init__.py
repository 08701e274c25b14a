# Copyright (c) gap_mm contributors. All rights reserved.
"""gap_mm: scheduled grow-and-prune (GaP) sparse training for OpenMMLab.

``import gap_mm`` registers everything: the hook and optimizer wrappers in
MMEngine's root registries, so every ``default_scope`` finds them; when mmdet
is installed, :class:`~gap_mm.models.FixedSSDHead` (mmdet's ``SSDHead`` with
what mmdet 3.3.0's prediction reads) in mmdet's; and, when mmdet3d is
installed, the task modules of :mod:`gap_mm3d` (the ShapeNet part dataset,
transforms, metric and the PointNet++ part segmentation model) in
mmdet3d's. It also allow-lists, for ``torch.load(weights_only=True)``,
exactly the MMEngine classes a checkpoint holds, so that ``--resume`` works
under torch >= 2.6 without ever switching ``weights_only`` off, and replaces
the loader of every ``CheckpointLoader`` scheme (local, ``http(s)://``,
``torchvision://``, ``open-mmlab://`` ...) with one that reads with
``weights_only=True`` (:mod:`gap_mm.checkpoint.schemes`). Local files are
written atomically (:mod:`gap_mm.fileio`) and ``'CheckpointHook'`` builds
:class:`gap_mm.engine.checkpointing.AtomicCheckpointHook`, which deletes an
old checkpoint only after the new one is complete.
"""
from importlib.util import find_spec

from . import (checkpoint, engine, fileio, models, registry,  # noqa: F401
               schedules, sparsity)
from .engine import (GaPAmpOptimWrapper, GaPHook, GaPOptimWrapper, GMPHook,
                     GRegHook, RigLHook, SCSHook, SETHook)
from .checkpoint.schemes import register_safe_schemes
from .engine.checkpointing import register_atomic_checkpoint_hook
from .fileio import register_atomic_local_backend
from .utils.safe_load import allow_mmengine_checkpoint_globals
from .version import __version__

allow_mmengine_checkpoint_globals()
register_safe_schemes()
# Checkpoints are written whole or not at all, and deleted only after the
# next one is complete (docs/en/advanced_guides/fault_tolerance.md).
register_atomic_local_backend()
register_atomic_checkpoint_hook()

# The point-cloud tasks need mmdet3d (the `3d` extra); detection needs only
# mmdet. With mmdet3d present, a failing gap_mm3d import stays loud.
if find_spec('mmdet3d') is not None:
    import gap_mm3d  # noqa: F401,E402

__all__ = [
    'GaPAmpOptimWrapper', 'GaPHook', 'GaPOptimWrapper', 'GMPHook', 'GRegHook',
    'RigLHook', 'SCSHook', 'SETHook', '__version__'
]
