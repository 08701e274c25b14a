# Copyright (c) gap_mm contributors. All rights reserved.
"""PointNet++ set abstraction (SA) on :mod:`gap_mm3d.ops`.

mmdet3d's ``PointSAModule`` / ``PointSAModuleMSG`` group points with mmcv's
``PointsSampler`` and ``QueryAndGroup``, which call mmcv's CUDA-only kernels
directly, so they cannot run on the CPU. This module does the same
computation with the device-dispatched operators of :mod:`gap_mm3d.ops`
(pure torch on the CPU, mmcv's kernels on CUDA). Its parameters have the
same names and shapes as those of mmdet3d's ``PointSAModuleMSG``
(``mlps.<scale>.layer<i>.conv`` / ``.bn``), so state dicts are
interchangeable between the two.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..ops import (ball_query, furthest_point_sample, gather_points,
                   grouping_operation)


class PointNet2SAModule(BaseModule):
    """Set abstraction with single- or multi-scale grouping (SSG / MSG).

    1. Furthest point sampling picks ``num_point`` centres (D-FPS on xyz).
    2. For every scale ``i``, a ball query of radius ``radii[i]`` gathers up
       to ``sample_nums[i]`` neighbours of each centre; their xyz relative
       to the centre (when ``use_xyz``) and their features are stacked.
    3. A shared MLP (1x1 ``Conv2d`` + norm + ReLU per layer) and a max (or
       average) pool over the neighbours give one feature per centre and
       scale; the scales are concatenated.

    With ``num_point=None`` the module groups all points into one centre at
    the origin ("group all"), as the last SA level of PointNet++ does.

    Args:
        num_point (int, optional): Number of centres. None groups all points
            into one. Defaults to None.
        radii (Sequence[float]): Ball radius of each scale. Ignored (and may
            be empty) for ``num_point=None``. Defaults to ().
        sample_nums (Sequence[int]): Neighbours per centre of each scale.
            Defaults to ().
        mlp_channels (Sequence[Sequence[int]]): For each scale, the MLP's
            channels starting with the input feature channels (without the
            3 xyz channels, which ``use_xyz`` adds), e.g. ``[[3, 64, 64,
            128]]``. Defaults to ``[[0, 64]]``.
        norm_cfg (dict): Norm layer of the MLPs. Defaults to
            ``dict(type='BN2d')``.
        use_xyz (bool): Concatenate the neighbours' relative xyz to their
            features. Defaults to True.
        pool_mod (str): ``'max'`` or ``'avg'``. Defaults to ``'max'``.
        normalize_xyz (bool): Divide the relative xyz by the radius.
            Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Examples:
        >>> sa = PointNet2SAModule(
        ...     num_point=512, radii=[0.1, 0.2], sample_nums=[16, 32],
        ...     mlp_channels=[[3, 32, 64], [3, 64, 128]])
        >>> xyz, feats = torch.rand(2, 1024, 3), torch.rand(2, 3, 1024)
        >>> new_xyz, new_feats, idx = sa(xyz, feats)
        >>> new_feats.shape
        torch.Size([2, 192, 512])
    """

    def __init__(self,
                 num_point: Optional[int] = None,
                 radii: Sequence[float] = (),
                 sample_nums: Sequence[int] = (),
                 mlp_channels: Sequence[Sequence[int]] = ((0, 64), ),
                 norm_cfg: dict = dict(type='BN2d'),
                 use_xyz: bool = True,
                 pool_mod: str = 'max',
                 normalize_xyz: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        assert pool_mod in ('max', 'avg'), \
            f"pool_mod must be 'max' or 'avg', but got pool_mod: {pool_mod}"
        mlp_channels = [list(c) for c in mlp_channels]
        if num_point is None:
            assert len(mlp_channels) == 1, \
                'group all (num_point=None) has one scale, but got ' \
                f'mlp_channels: {mlp_channels}'
        else:
            assert num_point > 0, \
                f'num_point must be positive, but got num_point: {num_point}'
            assert len(radii) == len(sample_nums) == len(mlp_channels) > 0, \
                'radii, sample_nums and mlp_channels need one entry per ' \
                f'scale, but got radii: {list(radii)}, sample_nums: ' \
                f'{list(sample_nums)}, mlp_channels: {mlp_channels}'
        assert all(len(c) >= 2 for c in mlp_channels), \
            'every scale needs input and output channels, but got ' \
            f'mlp_channels: {mlp_channels}'
        self.num_point = num_point
        self.radii = [float(r) for r in radii]
        self.sample_nums = [int(n) for n in sample_nums]
        self.use_xyz = use_xyz
        self.pool_mod = pool_mod
        self.normalize_xyz = normalize_xyz
        self.in_channels = mlp_channels[0][0]
        self.out_channels = sum(c[-1] for c in mlp_channels)

        assert all(c[0] == self.in_channels for c in mlp_channels), \
            'every scale must start with the same input channels, but got ' \
            f'mlp_channels: {mlp_channels}'
        assert use_xyz or self.in_channels > 0, \
            'without features the neighbours\' xyz must be used, but got ' \
            f'use_xyz: {use_xyz} and mlp_channels: {mlp_channels}'

        self.mlps = nn.ModuleList()
        for channels in mlp_channels:
            channels = [channels[0] + 3 * use_xyz] + channels[1:]
            mlp = nn.Sequential()
            for i in range(len(channels) - 1):
                mlp.add_module(
                    f'layer{i}',
                    ConvModule(
                        channels[i],
                        channels[i + 1],
                        kernel_size=(1, 1),
                        stride=(1, 1),
                        conv_cfg=dict(type='Conv2d'),
                        norm_cfg=norm_cfg))
            self.mlps.append(mlp)

    def _group(self, scale: int, points_xyz: Tensor, new_xyz: Tensor,
               features: Optional[Tensor]) -> Tensor:
        """Ball-query grouping of one scale, as mmcv's ``QueryAndGroup``.

        Returns:
            Tensor: (B, 3 * use_xyz + C, num_point, sample_num).
        """
        radius = self.radii[scale]
        idx = ball_query(0.0, radius, self.sample_nums[scale], points_xyz,
                         new_xyz)
        xyz_t = points_xyz.transpose(1, 2).contiguous()
        grouped = []
        if self.use_xyz or features is None:
            grouped_xyz = grouping_operation(xyz_t, idx)
            grouped_xyz = grouped_xyz - new_xyz.transpose(1, 2).unsqueeze(-1)
            if self.normalize_xyz:
                grouped_xyz = grouped_xyz / radius
            grouped.append(grouped_xyz)
        if features is not None:
            grouped.append(grouping_operation(features.contiguous(), idx))
        return torch.cat(grouped, dim=1)

    def _group_all(self, points_xyz: Tensor,
                   features: Optional[Tensor]) -> Tensor:
        """Group every point into one centre, as mmcv's ``GroupAll``.

        Returns:
            Tensor: (B, 3 * use_xyz + C, 1, N).
        """
        grouped = []
        if self.use_xyz or features is None:
            grouped.append(points_xyz.transpose(1, 2).unsqueeze(2))
        if features is not None:
            grouped.append(features.unsqueeze(2))
        return torch.cat(grouped, dim=1)

    def _pool(self, features: Tensor) -> Tensor:
        """Pool (B, C, M, K) over the K neighbours to (B, C, M)."""
        if self.pool_mod == 'max':
            return features.max(dim=-1)[0]
        return features.mean(dim=-1)

    def forward(
        self,
        points_xyz: Tensor,
        features: Optional[Tensor] = None
    ) -> Tuple[Optional[Tensor], Tensor, Optional[Tensor]]:
        """Abstract a point set.

        Args:
            points_xyz (Tensor): (B, N, 3) coordinates.
            features (Tensor, optional): (B, C, N) features, C =
                ``mlp_channels[i][0]``. Defaults to None.

        Returns:
            tuple[Tensor | None, Tensor, Tensor | None]:

            - new_xyz: (B, num_point, 3) centres, None for group all.
            - new_features: (B, sum of the scales' out channels,
              num_point), (B, C_out, 1) for group all.
            - indices: (B, num_point) int indices of the centres in
              ``points_xyz``, None for group all.
        """
        if self.num_point is None:
            new_features = self._pool(self.mlps[0](self._group_all(
                points_xyz, features)))
            return None, new_features, None

        points_xyz = points_xyz.contiguous()
        indices = furthest_point_sample(points_xyz, self.num_point)
        new_xyz = gather_points(
            points_xyz.transpose(1, 2).contiguous(),
            indices).transpose(1, 2).contiguous()
        outs: List[Tensor] = []
        for scale, mlp in enumerate(self.mlps):
            grouped = self._group(scale, points_xyz, new_xyz, features)
            outs.append(self._pool(mlp(grouped)))
        return new_xyz, torch.cat(outs, dim=1), indices


__all__ = ['PointNet2SAModule']
