# Copyright (c) gap_mm contributors. All rights reserved.
"""PointNet++ feature propagation (FP) on :mod:`gap_mm3d.ops`."""
from typing import Optional

import torch
from mmdet3d.models.layers import PointFPModule
from torch import Tensor

from ..ops import three_interpolate, three_nn


class PointNet2FPModule(PointFPModule):
    """mmdet3d's ``PointFPModule`` with device-dispatched point operators.

    The layers (and so the state dict) are mmdet3d's: ``mlps.layer<i>`` are
    1x1 ``Conv2d`` + norm + ReLU modules over ``mlp_channels``. Only
    :meth:`forward` differs: it calls :func:`gap_mm3d.ops.three_nn` and
    :func:`gap_mm3d.ops.three_interpolate`, which run pure torch on the CPU
    and mmcv's kernels on CUDA, where mmdet3d's module calls mmcv's
    CUDA-only kernels directly.

    Each target point's features are the inverse-distance weighted mean of
    the features of its three nearest source points, concatenated with the
    target's own (skip) features and passed through the MLP.

    Args:
        mlp_channels (list[int]): MLP channels, the first being the
            interpolated plus the skip feature channels.
        norm_cfg (dict): Norm layer config. Defaults to
            ``dict(type='BN2d')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def forward(self, target: Tensor, source: Optional[Tensor],
                target_feats: Optional[Tensor],
                source_feats: Tensor) -> Tensor:
        """Propagate ``source_feats`` from ``source`` to ``target``.

        Args:
            target (Tensor): (B, n, 3) xyz of the points that receive
                features.
            source (Tensor, optional): (B, m, 3) xyz of the points that hold
                ``source_feats``. None when the source is a single global
                feature (after a group-all SA), which is then broadcast.
            target_feats (Tensor, optional): (B, C1, n) skip features of the
                target points.
            source_feats (Tensor): (B, C2, m) features to propagate.

        Returns:
            Tensor: (B, mlp_channels[-1], n) new target features.
        """
        if source is not None:
            dist, idx = three_nn(target.contiguous(), source.contiguous())
            dist_reciprocal = 1.0 / (dist + 1e-8)
            norm = torch.sum(dist_reciprocal, dim=2, keepdim=True)
            weight = dist_reciprocal / norm
            interpolated = three_interpolate(source_feats.contiguous(), idx,
                                             weight)
        else:
            interpolated = source_feats.expand(*source_feats.shape[:2],
                                               target.size(1))
        if target_feats is not None:
            new_features = torch.cat([interpolated, target_feats], dim=1)
        else:
            new_features = interpolated
        return self.mlps(new_features.unsqueeze(-1)).squeeze(-1)


__all__ = ['PointNet2FPModule']
