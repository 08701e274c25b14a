"""Device dispatch for the PointNet++ point operators.

mmcv's point operators (``furthest_point_sample``, ``ball_query``,
``grouping_operation``, ...) exist only as CUDA (and some NPU) kernels. This
module defines functions with the same names and signatures that choose an
implementation from the device of the input tensor, at every call:

- a tensor on the CPU goes to the pure-torch code in
  :mod:`gap_mm3d.ops.point_ops_cpu`;
- a tensor on any other device (CUDA, NPU, MLU) goes to ``mmcv.ops``, the
  kernels that mmdet3d uses, unchanged. ``mmcv.ops`` is imported only then,
  so this module imports, and the CPU path works, with an mmcv that was
  built without ops. If that import fails for a non-CPU tensor, or a CUDA
  tensor meets an mmcv built without CUDA (``FORCE_CUDA=0`` on a machine
  without nvcc, then reused from pip's wheel cache), the call falls back to
  the pure-torch code (which is device agnostic) with a one-time warning.

The decision is made by :func:`get_point_op`, the one place that holds it.
Nothing in mmcv or mmdet3d is patched: code that wants the CPU path, such as
our own PointNet++ set-abstraction and feature-propagation modules, imports
these functions instead of mmcv's::

    from gap_mm3d.ops import ball_query, furthest_point_sample

Note:
    - mmcv's kernels assert contiguous inputs (and int32 indices); the
      pure-torch code accepts any layout and int32 or int64 indices. Pass
      contiguous tensors so that both paths work.
    - The pure-torch ``three_interpolate`` also returns a gradient for
      ``weight``; mmcv's kernel returns none. Neither backend differentiates
      the outputs of ``three_nn``, so PointNet++ trains the same on both.
    - The stacked (``*_batch_cnt``) variants of ``ball_query`` and
      ``grouping_operation`` exist only in mmcv's kernels.
    - Both furthest-point samplers run on the float32 copy of their input
      on every device (mmcv's kernels read float32 only), and the
      pure-torch ones break exact ties as the kernels' thread reduction
      does, so the backends pick the same indices; see
      :func:`point_ops_cpu.furthest_point_sample` for the rule and for
      the one source of difference (FMA contraction on the GPU).
"""
import functools
import warnings
from typing import Callable, Optional, Tuple

from torch import Tensor

from . import point_ops_cpu

_MMCV_FALLBACK_WARNED = False


@functools.lru_cache(maxsize=1)
def _import_mmcv_ops():
    """Import ``mmcv.ops`` once, or return None when it is unavailable."""
    try:
        import mmcv.ops as mmcv_ops
    except (ImportError, OSError, AssertionError):
        # AssertionError: mmcv's ext_loader asserts that every symbol of a
        # partial build is present.
        return None
    return mmcv_ops


@functools.lru_cache(maxsize=4)
def _has_cuda_kernels(mmcv_ops) -> bool:
    """Whether ``mmcv_ops`` was compiled with its CUDA kernels; asked of
    mmcv's extension once per process."""
    version = getattr(mmcv_ops, 'get_compiling_cuda_version', None)
    return version is not None and version() != 'not available'


def get_point_op(name: str, tensor: Tensor) -> Callable:
    """Return the implementation of the point operator ``name`` to use.

    Args:
        name (str): Name of the operator, as in ``mmcv.ops``, for example
            ``'ball_query'``.
        tensor (Tensor): The input whose device decides.

    Returns:
        Callable: ``point_ops_cpu.<name>`` for a CPU tensor, otherwise
        ``mmcv.ops.<name>`` (or ``point_ops_cpu.<name>`` when ``mmcv.ops``
        cannot be imported).
    """
    device = tensor.device.type
    if device != 'cpu':
        mmcv_ops = _import_mmcv_ops()
        if mmcv_ops is None:
            reason = 'mmcv.ops could not be imported'
        elif device == 'cuda' and not _has_cuda_kernels(mmcv_ops):
            reason = ('mmcv was built without CUDA ops (rebuild it with '
                      'MMCV_WITH_OPS=1 FORCE_CUDA=1)')
        else:
            return getattr(mmcv_ops, name)
        global _MMCV_FALLBACK_WARNED
        if not _MMCV_FALLBACK_WARNED:
            _MMCV_FALLBACK_WARNED = True
            warnings.warn(f'{reason}; the point operators use the slower '
                          f'pure-torch code on {device} tensors.')
    return getattr(point_ops_cpu, name)


def furthest_point_sample(points_xyz: Tensor, num_points: int) -> Tensor:
    """Furthest point sampling; see ``mmcv.ops.furthest_point_sample``.

    Args:
        points_xyz (Tensor): (B, N, 3) coordinates, sampled in float32.
        num_points (int): Number of points to sample.

    Returns:
        Tensor: (B, num_points) int32 indices, starting with 0.
    """
    # mmcv's kernel reads float32 only; every backend samples the float32
    # copy, so a float64 input picks the same indices on every device.
    points_xyz = points_xyz.float()
    return get_point_op('furthest_point_sample',
                        points_xyz)(points_xyz, num_points)


def furthest_point_sample_with_dist(points_dist: Tensor,
                                    num_points: int) -> Tensor:
    """FPS on distances; see ``mmcv.ops.furthest_point_sample_with_dist``.

    Args:
        points_dist (Tensor): (B, N, N) pairwise distances, sampled in
            float32.
        num_points (int): Number of points to sample.

    Returns:
        Tensor: (B, num_points) int32 indices, starting with 0.
    """
    points_dist = points_dist.float()  # as furthest_point_sample
    return get_point_op('furthest_point_sample_with_dist',
                        points_dist)(points_dist, num_points)


def ball_query(min_radius: float,
               max_radius: float,
               sample_num: int,
               xyz: Tensor,
               center_xyz: Tensor,
               xyz_batch_cnt: Optional[Tensor] = None,
               center_xyz_batch_cnt: Optional[Tensor] = None) -> Tensor:
    """Ball query; see ``mmcv.ops.ball_query``.

    Args:
        min_radius (float): Minimum radius of the balls.
        max_radius (float): Maximum radius of the balls.
        sample_num (int): Maximum number of points in each ball.
        xyz (Tensor): (B, N, 3) coordinates of the points.
        center_xyz (Tensor): (B, npoint, 3) centres of the balls.
        xyz_batch_cnt (Tensor, optional): Stacked-input counts (mmcv's
            kernels only). Defaults to None.
        center_xyz_batch_cnt (Tensor, optional): Stacked-input counts
            (mmcv's kernels only). Defaults to None.

    Returns:
        Tensor: (B, npoint, sample_num) int32 indices into ``xyz``.
    """
    args = (min_radius, max_radius, sample_num, xyz, center_xyz)
    if xyz_batch_cnt is not None or center_xyz_batch_cnt is not None:
        args += (xyz_batch_cnt, center_xyz_batch_cnt)
    return get_point_op('ball_query', xyz)(*args)


def grouping_operation(features: Tensor,
                       indices: Tensor,
                       features_batch_cnt: Optional[Tensor] = None,
                       indices_batch_cnt: Optional[Tensor] = None) -> Tensor:
    """Group features by indices; see ``mmcv.ops.grouping_operation``.

    Args:
        features (Tensor): (B, C, N) features.
        indices (Tensor): (B, npoint, nsample) indices.
        features_batch_cnt (Tensor, optional): Stacked-input counts (mmcv's
            kernels only). Defaults to None.
        indices_batch_cnt (Tensor, optional): Stacked-input counts (mmcv's
            kernels only). Defaults to None.

    Returns:
        Tensor: (B, C, npoint, nsample) grouped features.
    """
    # mmcv's backward returns two gradients for the plain variant, so the
    # optional arguments are passed only when they are given.
    args = (features, indices)
    if features_batch_cnt is not None or indices_batch_cnt is not None:
        args += (features_batch_cnt, indices_batch_cnt)
    return get_point_op('grouping_operation', features)(*args)


def gather_points(features: Tensor, indices: Tensor) -> Tensor:
    """Gather features by indices; see ``mmcv.ops.gather_points``.

    Args:
        features (Tensor): (B, C, N) features.
        indices (Tensor): (B, M) indices.

    Returns:
        Tensor: (B, C, M) gathered features.
    """
    return get_point_op('gather_points', features)(features, indices)


def three_nn(target: Tensor, source: Tensor) -> Tuple[Tensor, Tensor]:
    """Three nearest neighbours; see ``mmcv.ops.three_nn``.

    Args:
        target (Tensor): (B, N, 3) query points.
        source (Tensor): (B, M, 3) candidate neighbours.

    Returns:
        tuple[Tensor, Tensor]: (B, N, 3) Euclidean distances and (B, N, 3)
        int32 indices into ``source``.
    """
    return get_point_op('three_nn', target)(target, source)


def three_interpolate(features: Tensor, indices: Tensor,
                      weight: Tensor) -> Tensor:
    """Three-neighbour interpolation; see ``mmcv.ops.three_interpolate``.

    Args:
        features (Tensor): (B, C, M) source features.
        indices (Tensor): (B, N, 3) neighbour indices.
        weight (Tensor): (B, N, 3) interpolation weights.

    Returns:
        Tensor: (B, C, N) interpolated features.
    """
    # mmcv's kernel reads the weights as the features' dtype: under autocast
    # the features are fp16 while weights from fp32 xyz stay fp32.
    weight = weight.to(features.dtype)
    return get_point_op('three_interpolate',
                        features)(features, indices, weight)
