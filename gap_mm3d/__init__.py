# Copyright (c) gap_mm contributors. All rights reserved.
"""gap_mm3d: the MMDetection3D task modules of gap_mm.

ShapeNet part segmentation as the GaP paper trains it, which mmdet3d lacks:
``ShapeNetPartDataset`` and its transforms, ``PartSegMetric``,
``PointNet2PartSeg`` (SSG/MSG) and ``PartSegVisualizationHook`` (what
``tools/test.py --show-dir`` draws), all registered in mmdet3d's
registries, and pure-torch CPU versions of mmcv's PointNet++ point
operators (:mod:`gap_mm3d.ops`, chosen by tensor device).

This package knows nothing of the sparsity engine and never imports
``gap_mm``: a sparse checkpoint is evaluated by plain mmdet3d with
``custom_imports = dict(imports=['gap_mm3d'])``. ``import gap_mm`` imports
it as well (when mmdet3d is installed), so GaP configs need only
``imports=['gap_mm']``.
"""
from . import datasets, engine, evaluation, models, ops  # noqa: F401

__all__ = ['datasets', 'engine', 'evaluation', 'models', 'ops']
