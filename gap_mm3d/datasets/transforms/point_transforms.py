# Copyright (c) gap_mm authors. All rights reserved.
"""Transforms for ShapeNet part segmentation.

The pipeline works on a results dict whose ``points`` is a float32
``np.ndarray`` of shape (N, C) with xyz in columns 0-2 and, when
``with_normals`` is True (the default), unit normals in columns 3-5; further
columns are carried along untouched. ``pts_semantic_mask`` is an int64
``np.ndarray`` of shape (N,) holding global part ids. A typical pipeline::

    train_pipeline = [
        dict(type='LoadShapeNetPartPoints'),
        dict(type='PartPointSample', num_points=2048),
        dict(type='NormalizePointsToUnitSphere'),
        dict(type='RandomAnisotropicScale', scale_range=(0.8, 1.25)),
        dict(type='RandomPointTranslate', shift_range=0.1),
        dict(type='PackPartSegInputs'),
    ]
    test_pipeline = [
        dict(type='LoadShapeNetPartPoints'),
        dict(type='PartPointSample', num_points=2048, deterministic=True),
        dict(type='NormalizePointsToUnitSphere'),
        dict(type='PackPartSegInputs'),
    ]

Names avoid mmdet3d's own transforms (``PointSample``,
``RandomJitterPoints``, ...), which live in the same registry.
"""
import zlib
from typing import Any, Sequence, Tuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures import Det3DDataSample, PointData

from ..shapenet_part_dataset import (SHAPENET_PART_CATEGORY_PARTS,
                                     load_shapenet_part_txt)


def _check_points(results: dict, with_normals: bool, name: str) -> np.ndarray:
    """Return ``results['points']`` after checking its shape."""
    points = results.get('points')
    if not isinstance(points, np.ndarray) or points.ndim != 2:
        raise TypeError(f'{name} expects results["points"] to be an '
                        f'np.ndarray of shape (N, C), but got '
                        f'{type(points).__name__}'
                        f'{getattr(points, "shape", "")}')
    min_dims = 6 if with_normals else 3
    if points.shape[1] < min_dims:
        raise ValueError(f'{name} expects at least {min_dims} point '
                         f'dimensions (with_normals={with_normals}), but got '
                         f'points of shape {points.shape}')
    return points


@TRANSFORMS.register_module()
class LoadShapeNetPartPoints(BaseTransform):
    """Load one ShapeNet part shape file and validate it.

    Required keys: ``pts_path``; ``part_ids`` or ``category_id`` (used to
    check that every label belongs to the shape's category).

    Added keys:

    - ``points`` (np.ndarray): (N, 6) float32, ``x y z nx ny nz``.
    - ``pts_semantic_mask`` (np.ndarray): (N,) int64 global part ids.

    A malformed file raises ``ValueError('<pts_path>:<line>: ...')``.
    """

    def transform(self, results: dict) -> dict:
        """Load the points and part labels.

        Args:
            results (dict): Data info from :class:`ShapeNetPartDataset`.

        Returns:
            dict: ``results`` with ``points`` and ``pts_semantic_mask``.
        """
        part_ids = results.get('part_ids')
        if part_ids is None and 'category' in results:
            part_ids = SHAPENET_PART_CATEGORY_PARTS[results['category']]
        points, labels = load_shapenet_part_txt(results['pts_path'], part_ids)
        results['points'] = points
        results['pts_semantic_mask'] = labels
        results['num_pts_feats'] = points.shape[1]
        return results


@TRANSFORMS.register_module()
class PartPointSample(BaseTransform):
    """Sample a fixed number of points.

    Draws ``num_points`` indices without replacement when the shape has at
    least that many points, otherwise with replacement (every point is kept
    once and the rest is drawn at random). The same indices select the rows
    of ``points`` and ``pts_semantic_mask``.

    Required keys: ``points``; optional ``pts_semantic_mask``.
    Modified keys: ``points``, ``pts_semantic_mask``.

    Args:
        num_points (int): Number of points to keep. Defaults to 2048.
        deterministic (bool): Seed the choice with a hash of the shape
            (``shape_id``, else ``pts_path``, else ``sample_idx``) so that
            evaluation sees the same points in every run and in every worker.
            Defaults to False (uses numpy's global RNG, which mmengine seeds).
    """

    def __init__(self,
                 num_points: int = 2048,
                 deterministic: bool = False) -> None:
        assert num_points > 0, \
            f'num_points must be positive, but got num_points: {num_points}'
        self.num_points = num_points
        self.deterministic = deterministic

    def _rng(self, results: dict) -> Any:
        """numpy's global RNG, or one seeded by the shape's identity."""
        if not self.deterministic:
            return np.random
        key = str(
            results.get('shape_id',
                        results.get('pts_path', results.get('sample_idx'))))
        return np.random.default_rng(zlib.crc32(key.encode('utf-8')))

    def transform(self, results: dict) -> dict:
        """Sample the points.

        Args:
            results (dict): Result dict.

        Returns:
            dict: ``results`` with exactly ``num_points`` points.
        """
        points = _check_points(results, False, type(self).__name__)
        num = points.shape[0]
        if num == 0:
            raise ValueError('PartPointSample got a shape without points')
        rng = self._rng(results)
        if num >= self.num_points:
            choice = rng.permutation(num)[:self.num_points]
        else:
            extra = rng.choice(num, self.num_points - num, replace=True)
            choice = np.concatenate([np.arange(num), extra])
            choice = choice[rng.permutation(self.num_points)]
        results['points'] = points[choice]
        if 'pts_semantic_mask' in results:
            results['pts_semantic_mask'] = results['pts_semantic_mask'][choice]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_points={self.num_points}, '
                f'deterministic={self.deterministic})')


@TRANSFORMS.register_module()
class NormalizePointsToUnitSphere(BaseTransform):
    """Centre the points at their centroid and scale them into the unit
    sphere (the farthest point ends at distance 1).

    Normals are unchanged: translation and uniform scaling keep them.

    Required keys: ``points``. Modified keys: ``points``.
    Added keys: ``pcd_center`` (np.ndarray (3,)), ``pcd_norm_scale``
    (float, the divisor applied to the centred coordinates).
    """

    def transform(self, results: dict) -> dict:
        """Normalise the coordinates.

        Args:
            results (dict): Result dict.

        Returns:
            dict: ``results`` with normalised xyz.
        """
        points = _check_points(results, False, type(self).__name__).copy()
        center = points[:, :3].mean(axis=0)
        points[:, :3] -= center
        scale = float(np.linalg.norm(points[:, :3], axis=1).max())
        if scale > 0:
            points[:, :3] /= scale
        else:
            scale = 1.0
        results['points'] = points
        results['pcd_center'] = center
        results['pcd_norm_scale'] = scale
        return results


@TRANSFORMS.register_module()
class RandomAnisotropicScale(BaseTransform):
    """Scale each axis by its own random factor, as PointNet++ does.

    With ``with_normals=True`` the normals (columns 3-5) are transformed the
    way normals must be under a linear map ``A = diag(s)``: by the inverse
    transpose, ``n' = A^{-T} n = n / s``, then renormalised to unit length
    (zero normals stay zero). Scaling them by ``s`` like the coordinates
    would tilt them off the surface.

    Required keys: ``points``. Modified keys: ``points``.
    Added keys: ``pcd_scale_factor`` (np.ndarray (3,)).

    Args:
        scale_range (tuple[float, float]): Range of the uniform per-axis
            factor. Defaults to (0.8, 1.25).
        with_normals (bool): Whether columns 3-5 are normals. Defaults to
            True.
    """

    def __init__(self,
                 scale_range: Tuple[float, float] = (0.8, 1.25),
                 with_normals: bool = True) -> None:
        low, high = scale_range
        assert 0 < low <= high, \
            f'scale_range must satisfy 0 < low <= high, but got {scale_range}'
        self.scale_range = (float(low), float(high))
        self.with_normals = with_normals

    def transform(self, results: dict) -> dict:
        """Scale the points.

        Args:
            results (dict): Result dict.

        Returns:
            dict: ``results`` with scaled points.
        """
        points = _check_points(results, self.with_normals,
                               type(self).__name__).copy()
        scale = np.random.uniform(*self.scale_range, size=3)
        points[:, :3] *= scale.astype(points.dtype)
        if self.with_normals:
            normals = points[:, 3:6] / scale.astype(points.dtype)
            length = np.linalg.norm(normals, axis=1, keepdims=True)
            points[:, 3:6] = np.divide(
                normals, length, out=np.zeros_like(normals), where=length > 0)
        results['points'] = points
        results['pcd_scale_factor'] = scale
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scale_range={self.scale_range}, '
                f'with_normals={self.with_normals})')


@TRANSFORMS.register_module()
class RandomPointTranslate(BaseTransform):
    """Shift the whole shape by one random offset per axis.

    Normals are unchanged.

    Required keys: ``points``. Modified keys: ``points``.
    Added keys: ``pcd_trans`` (np.ndarray (3,)).

    Args:
        shift_range (float): The offset of each axis is uniform in
            ``[-shift_range, shift_range]``. Defaults to 0.1.
    """

    def __init__(self, shift_range: float = 0.1) -> None:
        assert shift_range >= 0, \
            f'shift_range must be non-negative, but got {shift_range}'
        self.shift_range = float(shift_range)

    def transform(self, results: dict) -> dict:
        """Translate the points.

        Args:
            results (dict): Result dict.

        Returns:
            dict: ``results`` with translated points.
        """
        points = _check_points(results, False, type(self).__name__).copy()
        shift = np.random.uniform(-self.shift_range, self.shift_range, size=3)
        points[:, :3] += shift.astype(points.dtype)
        results['points'] = points
        results['pcd_trans'] = shift
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(shift_range={self.shift_range})'


@TRANSFORMS.register_module()
class RandomPointJitter(BaseTransform):
    """Add clipped Gaussian noise to every point's coordinates.

    Normals are left unchanged: the noise models sampling error of the
    positions, not a change of the surface.

    Required keys: ``points``. Modified keys: ``points``.

    Args:
        sigma (float): Standard deviation of the noise. Defaults to 0.01.
        clip (float): The noise is clipped to ``[-clip, clip]``. Defaults to
            0.05.
    """

    def __init__(self, sigma: float = 0.01, clip: float = 0.05) -> None:
        assert sigma >= 0 and clip >= 0, \
            f'sigma and clip must be non-negative, but got sigma: {sigma}, ' \
            f'clip: {clip}'
        self.sigma = float(sigma)
        self.clip = float(clip)

    def transform(self, results: dict) -> dict:
        """Jitter the points.

        Args:
            results (dict): Result dict.

        Returns:
            dict: ``results`` with jittered xyz.
        """
        points = _check_points(results, False, type(self).__name__).copy()
        noise = np.clip(self.sigma * np.random.randn(points.shape[0], 3),
                        -self.clip, self.clip)
        points[:, :3] += noise.astype(points.dtype)
        results['points'] = points
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(sigma={self.sigma}, clip={self.clip})'


@TRANSFORMS.register_module()
class PackPartSegInputs(BaseTransform):
    """Pack a part segmentation sample for the model and the metric.

    Output::

        dict(
            inputs=dict(points=Tensor),       # (N, C) float32
            data_samples=Det3DDataSample(
                gt_pts_seg=PointData(
                    pts_semantic_mask=Tensor),  # (N,) int64 global part ids
                # metainfo, read as data_sample.<key>:
                category_id=int,  # index into dataset.metainfo['categories']
                category=str, shape_id=str, synset=str, sample_idx=int,
                pts_path=str, num_pts_feats=int, ...))

    Row ``i`` of ``inputs['points']`` and entry ``i`` of
    ``gt_pts_seg.pts_semantic_mask`` describe the same point. The metric
    (:class:`PartSegMetric`) reads ``gt_pts_seg.pts_semantic_mask`` and
    ``category_id`` and expects the model to add
    ``pred_pts_seg.pts_semantic_mask`` (same length, global part ids) to the
    same data sample.

    Args:
        meta_keys (Sequence[str]): Keys of ``results`` copied into the data
            sample's metainfo when present. ``category_id`` must be among
            them. Defaults to the keys listed above plus the augmentation
            records ``pcd_center``, ``pcd_norm_scale``, ``pcd_scale_factor``
            and ``pcd_trans``.
    """

    def __init__(
        self,
        meta_keys: Sequence[str] = ('category_id', 'category', 'shape_id',
                                    'synset', 'sample_idx', 'pts_path',
                                    'num_pts_feats', 'pcd_center',
                                    'pcd_norm_scale', 'pcd_scale_factor',
                                    'pcd_trans')
    ) -> None:
        assert 'category_id' in meta_keys, \
            f'meta_keys must contain "category_id", but got {meta_keys}'
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        """Pack the sample.

        Args:
            results (dict): Result dict.

        Returns:
            dict: ``dict(inputs=dict(points=...), data_samples=...)``.
        """
        points = results['points']
        if isinstance(points, np.ndarray):
            points = torch.from_numpy(
                np.ascontiguousarray(points, dtype=np.float32))
        elif hasattr(points, 'tensor'):  # mmdet3d BasePoints
            points = points.tensor.float()
        else:
            points = torch.as_tensor(points, dtype=torch.float32)
        if 'category_id' not in results:
            raise KeyError('PackPartSegInputs needs results["category_id"]')

        data_sample = Det3DDataSample()
        metainfo = {k: results[k] for k in self.meta_keys if k in results}
        metainfo['category_id'] = int(metainfo['category_id'])
        data_sample.set_metainfo(metainfo)
        gt_pts_seg = PointData()
        if 'pts_semantic_mask' in results:
            mask = torch.as_tensor(
                np.asarray(results['pts_semantic_mask']), dtype=torch.long)
            if mask.shape[0] != points.shape[0]:
                raise ValueError(
                    f'{results.get("pts_path", "sample")}: '
                    f'{points.shape[0]} points but {mask.shape[0]} labels')
            gt_pts_seg.pts_semantic_mask = mask
        data_sample.gt_pts_seg = gt_pts_seg
        return dict(inputs=dict(points=points), data_samples=data_sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'


__all__ = [
    'LoadShapeNetPartPoints', 'PartPointSample', 'NormalizePointsToUnitSphere',
    'RandomAnisotropicScale', 'RandomPointTranslate', 'RandomPointJitter',
    'PackPartSegInputs'
]
