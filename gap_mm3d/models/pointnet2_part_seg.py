# Copyright (c) gap_mm contributors. All rights reserved.
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet3d.models.data_preprocessors import Det3DDataPreprocessor
from mmdet3d.models.segmentors.base import Base3DSegmentor
from mmdet3d.registry import MODELS
from mmdet3d.structures import PointData
from mmdet3d.structures.det3d_data_sample import OptSampleList, SampleList
from torch import Tensor, nn

from ..datasets.shapenet_part_dataset import (SHAPENET_PART_CATEGORIES,
                                              SHAPENET_PART_CATEGORY_PARTS)
from .pointnet2_fp_module import PointNet2FPModule
from .pointnet2_sa_module import PointNet2SAModule

#: Set abstraction levels of the original part segmentation networks
#: (charlesq34/pointnet2, models/pointnet2_part_seg*.py). ``mlp_channels``
#: lists each scale's output channels; the input channels follow from the
#: previous level. ``num_point=None`` groups all points into one.
SA_PRESETS: Dict[str, Tuple[dict, ...]] = dict(
    ssg=(
        dict(
            num_point=512,
            radii=(0.2, ),
            sample_nums=(32, ),
            mlp_channels=((64, 64, 128), )),
        dict(
            num_point=128,
            radii=(0.4, ),
            sample_nums=(64, ),
            mlp_channels=((128, 128, 256), )),
        dict(num_point=None, mlp_channels=((256, 512, 1024), )),
    ),
    msg=(
        dict(
            num_point=512,
            radii=(0.1, 0.2, 0.4),
            sample_nums=(32, 64, 128),
            mlp_channels=((32, 32, 64), (64, 64, 128), (64, 96, 128))),
        dict(
            num_point=128,
            radii=(0.4, 0.8),
            sample_nums=(64, 128),
            mlp_channels=((128, 128, 256), (128, 196, 256))),
        dict(num_point=None, mlp_channels=((256, 512, 1024), )),
    ))
#: Output channels of the feature-propagation layers, deepest first.
FP_PRESETS: Dict[str, Tuple[Tuple[int, ...], ...]] = dict(
    ssg=((256, 256), (256, 128), (128, 128, 128)),
    msg=((256, 256), (256, 128), (128, 128)))


def _default_category_parts() -> List[List[int]]:
    """Part ids of the 16 ShapeNet part categories, by category id."""
    return [
        list(SHAPENET_PART_CATEGORY_PARTS[c]) for c in SHAPENET_PART_CATEGORIES
    ]


@MODELS.register_module()
class PointNet2PartSeg(Base3DSegmentor):
    """PointNet++ part segmentation (SSG or MSG), CPU- and GPU-capable.

    The network of Qi et al., "PointNet++" (NeurIPS 2017), for ShapeNet part
    segmentation:

    - ``sa_modules``: set-abstraction levels
      (:class:`PointNet2SAModule`), the last one grouping all points;
    - ``fp_modules``: feature-propagation layers
      (:class:`PointNet2FPModule`), deepest first. The last one propagates
      to the input points, whose skip features are the category one-hot
      (``num_categories`` channels), the xyz and the input features
      (normals), as in the original network;
    - ``decode_head``: the per-point part classifier
      (:class:`PartSegHead`), trained with cross entropy over all parts.

    :meth:`predict` restricts each shape to its own category's parts: the
    logits of every other part are set to ``-inf`` before the argmax, and
    the prediction, in global part ids, goes to
    ``pred_pts_seg.pts_semantic_mask``, which is what ``PartSegMetric``
    reads.

    The point operators come from :mod:`gap_mm3d.ops`: pure torch on the CPU,
    mmcv's kernels on CUDA. Prunable layers (for GaP) are the 1x1
    convolutions ``sa_modules.*``, ``fp_modules.*`` and ``decode_head.*``.

    Inputs: ``inputs['points']``, a list of B (N, in_channels) tensors or a
    (B, N, in_channels) tensor (xyz first), and data samples whose metainfo
    holds ``category_id``; training also needs
    ``gt_pts_seg.pts_semantic_mask``. All clouds of a batch need the same N
    (see ``PartPointSample``).

    Args:
        variant (str): ``'ssg'`` (single-scale grouping) or ``'msg'``
            (multi-scale grouping): picks the default ``sa_cfgs`` and
            ``fp_channels``. Defaults to ``'ssg'``.
        in_channels (int): Point channels: 3 (xyz) plus the features,
            6 with normals. Defaults to 6.
        sa_cfgs (Sequence[dict], optional): Set abstraction levels, each
            ``dict(num_point, radii, sample_nums, mlp_channels)`` with the
            output channels of every scale (see :data:`SA_PRESETS`).
            Defaults to None (the variant's).
        fp_channels (Sequence[Sequence[int]], optional): Output channels of
            each feature-propagation layer, deepest first; one per SA
            level. Defaults to None (the variant's).
        sa_norm_cfg (dict): Norm layer of the SA MLPs. Defaults to
            ``dict(type='BN2d')``.
        fp_norm_cfg (dict): Norm layer of the FP MLPs. Defaults to
            ``dict(type='BN2d')``.
        decode_head (dict): Config of the head; ``in_channels`` is filled
            in. Defaults to ``dict(type='PartSegHead', channels=128,
            num_classes=50)``.
        category_parts (Sequence[Sequence[int]], optional): Global part ids
            of each category, indexed by ``category_id``. Defaults to None
            (the 16 ShapeNet part categories).
        data_preprocessor (dict, optional): Defaults to None (mmdet3d's
            ``Det3DDataPreprocessor``, which passes the points through as a
            list).
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Examples:
        >>> model = dict(
        ...     type='PointNet2PartSeg',
        ...     variant='msg',
        ...     data_preprocessor=dict(type='Det3DDataPreprocessor'),
        ...     decode_head=dict(type='PartSegHead', num_classes=50))
    """

    def __init__(self,
                 variant: str = 'ssg',
                 in_channels: int = 6,
                 sa_cfgs: Optional[Sequence[dict]] = None,
                 fp_channels: Optional[Sequence[Sequence[int]]] = None,
                 sa_norm_cfg: dict = dict(type='BN2d'),
                 fp_norm_cfg: dict = dict(type='BN2d'),
                 decode_head: Optional[dict] = None,
                 category_parts: Optional[Sequence[Sequence[int]]] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type=Det3DDataPreprocessor)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if variant not in SA_PRESETS:
            raise ValueError(f'variant must be one of {sorted(SA_PRESETS)}, '
                             f'but got variant: {variant!r}')
        assert in_channels >= 3, \
            f'in_channels must be >= 3 (xyz), but got {in_channels}'
        self.variant = variant
        self.in_channels = in_channels
        sa_cfgs = SA_PRESETS[variant] if sa_cfgs is None else sa_cfgs
        fp_channels = FP_PRESETS[variant] if fp_channels is None \
            else fp_channels
        if len(fp_channels) != len(sa_cfgs):
            raise ValueError(
                'PointNet2PartSeg needs one feature-propagation layer per '
                f'set-abstraction level, but got {len(sa_cfgs)} sa_cfgs and '
                f'{len(fp_channels)} fp_channels')

        if category_parts is None:
            category_parts = _default_category_parts()
        category_parts = [list(map(int, p)) for p in category_parts]
        self.num_categories = len(category_parts)

        # Set abstraction: level 0 is the input cloud.
        level_channels = [in_channels - 3]
        self.sa_modules = nn.ModuleList()
        for cfg in sa_cfgs:
            cfg = copy.deepcopy(dict(cfg))
            scales = cfg.pop('mlp_channels')
            self.sa_modules.append(
                PointNet2SAModule(
                    mlp_channels=[[level_channels[-1]] + list(s)
                                  for s in scales],
                    norm_cfg=sa_norm_cfg,
                    **cfg))
            level_channels.append(self.sa_modules[-1].out_channels)

        # Feature propagation, deepest first; the last one gets the category
        # one-hot, the xyz and the input features as its skip features.
        self.fp_modules = nn.ModuleList()
        feat_channels = level_channels[-1]
        num_levels = len(sa_cfgs)
        for i, channels in enumerate(fp_channels):
            level = num_levels - 1 - i
            skip = level_channels[level] if level > 0 else \
                self.num_categories + 3 + level_channels[0]
            self.fp_modules.append(
                PointNet2FPModule(
                    mlp_channels=[feat_channels + skip] + list(channels),
                    norm_cfg=fp_norm_cfg))
            feat_channels = channels[-1]

        head_cfg = dict(type='PartSegHead', channels=128, num_classes=50)
        head_cfg.update(decode_head or {})
        head_cfg['in_channels'] = feat_channels
        self.decode_head = MODELS.build(head_cfg)
        self.num_parts = self.decode_head.num_classes

        part_mask = torch.zeros(
            self.num_categories, self.num_parts, dtype=torch.bool)
        for category_id, parts in enumerate(category_parts):
            bad = [p for p in parts if not 0 <= p < self.num_parts]
            if bad or not parts:
                raise ValueError(
                    f'category {category_id} has part ids {parts}, which '
                    f'must be a non-empty subset of 0..{self.num_parts - 1}')
            part_mask[category_id, parts] = True
        # Not persistent: the checkpoint holds only learned weights, so a
        # plain mmdet3d model with the same layers loads it unchanged.
        self.register_buffer('part_mask', part_mask, persistent=False)

    # ------------------------------------------------------------ inputs
    def _stack_points(self, batch_inputs_dict: dict) -> Tensor:
        """(B, N, in_channels) points from a list or a batch tensor."""
        points = batch_inputs_dict['points']
        if isinstance(points, Tensor):
            stacked = points
        else:
            sizes = {tuple(p.shape) for p in points}
            if len(sizes) != 1:
                raise ValueError(
                    'all point clouds of a batch need the same shape '
                    '(sample a fixed number of points, e.g. with '
                    f'PartPointSample), but got {sorted(sizes)}')
            stacked = torch.stack(list(points))
        if stacked.dim() != 3 or stacked.size(-1) != self.in_channels:
            raise ValueError(
                f'points must be (B, N, {self.in_channels}) (xyz + '
                f'{self.in_channels - 3} feature channels), but got '
                f'{tuple(stacked.shape)}')
        return stacked

    def _category_ids(self, batch_data_samples: OptSampleList, batch_size: int,
                      device: torch.device) -> Tensor:
        """The (B,) category ids from the data samples' metainfo."""
        if batch_data_samples is None or \
                len(batch_data_samples) != batch_size:
            raise ValueError(
                'PointNet2PartSeg needs one data sample with a category_id '
                'per point cloud (the category one-hot is an input of the '
                'network)')
        ids = []
        for sample in batch_data_samples:
            category_id = sample.metainfo.get('category_id')
            if category_id is None or \
                    not 0 <= int(category_id) < self.num_categories:
                raise ValueError(
                    'every data sample needs a category_id in '
                    f'0..{self.num_categories - 1}, but got {category_id!r} '
                    f"(sample {sample.metainfo.get('pts_path', '?')})")
            ids.append(int(category_id))
        return torch.tensor(ids, dtype=torch.long, device=device)

    # ----------------------------------------------------------- network
    def extract_feat(self,
                     batch_inputs_dict: dict,
                     batch_data_samples: OptSampleList = None) -> Tensor:
        """Per-point features of the last feature-propagation layer.

        Args:
            batch_inputs_dict (dict): ``points``, see the class docstring.
            batch_data_samples (list[Det3DDataSample]): Samples holding
                ``category_id``.

        Returns:
            Tensor: (B, C, N) point features.
        """
        points = self._stack_points(batch_inputs_dict)
        batch_size, num_points = points.shape[:2]
        xyz = points[..., :3].contiguous()
        feats = points[..., 3:].transpose(1, 2).contiguous() \
            if self.in_channels > 3 else None

        sa_xyz: List[Optional[Tensor]] = [xyz]
        sa_feats: List[Optional[Tensor]] = [feats]
        for sa in self.sa_modules:
            new_xyz, new_feats, _ = sa(sa_xyz[-1], sa_feats[-1])
            sa_xyz.append(new_xyz)
            sa_feats.append(new_feats)

        category_ids = self._category_ids(batch_data_samples, batch_size,
                                          points.device)
        one_hot = nn.functional.one_hot(category_ids, self.num_categories)
        skip0 = [
            one_hot.to(points.dtype)[:, :, None].expand(-1, -1, num_points),
            xyz.transpose(1, 2)
        ]
        if feats is not None:
            skip0.append(feats)
        skip0 = torch.cat(skip0, dim=1)

        x = sa_feats[-1]
        num_levels = len(self.sa_modules)
        for i, fp in enumerate(self.fp_modules):
            level = num_levels - 1 - i
            target_feats = sa_feats[level] if level > 0 else skip0
            x = fp(sa_xyz[level], sa_xyz[level + 1], target_feats, x)
        return x

    def encode_decode(self, batch_inputs_dict: dict,
                      batch_data_samples: SampleList) -> Tensor:
        """(B, num_parts, N) part logits of every point."""
        return self.decode_head(
            self.extract_feat(batch_inputs_dict, batch_data_samples))

    def _forward(self,
                 batch_inputs_dict: dict,
                 batch_data_samples: OptSampleList = None) -> Tensor:
        """Network forward: (B, num_parts, N) part logits."""
        return self.encode_decode(batch_inputs_dict, batch_data_samples)

    def loss(self, batch_inputs_dict: dict,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Cross entropy over all parts.

        Args:
            batch_inputs_dict (dict): ``points``.
            batch_data_samples (list[Det3DDataSample]): Samples with
                ``category_id`` and ``gt_pts_seg.pts_semantic_mask``.

        Returns:
            dict[str, Tensor]: ``loss_sem_seg``.
        """
        feats = self.extract_feat(batch_inputs_dict, batch_data_samples)
        return self.decode_head.loss(feats, batch_data_samples, None)

    def predict(self, batch_inputs_dict: dict,
                batch_data_samples: SampleList) -> SampleList:
        """Predict global part ids among each shape's own category's parts.

        Args:
            batch_inputs_dict (dict): ``points``.
            batch_data_samples (list[Det3DDataSample]): Samples with
                ``category_id``.

        Returns:
            list[Det3DDataSample]: The samples with ``pred_pts_seg.
            pts_semantic_mask`` (N,), global part ids, added.
        """
        seg_logits = self.encode_decode(batch_inputs_dict, batch_data_samples)
        category_ids = self._category_ids(batch_data_samples,
                                          seg_logits.size(0),
                                          seg_logits.device)
        allowed = self.part_mask[category_ids].unsqueeze(-1)  # (B, P, 1)
        seg_preds = seg_logits.masked_fill(~allowed,
                                           float('-inf')).argmax(dim=1)
        # Unlike mmdet3d's segmentors, the (num_parts, N) logits are not
        # kept: `tools/test.py --out` would otherwise pickle 400 KiB per
        # shape at 2048 points.
        for sample, pred in zip(batch_data_samples, seg_preds):
            sample.pred_pts_seg = PointData(pts_semantic_mask=pred)
        return batch_data_samples


__all__ = ['PointNet2PartSeg', 'SA_PRESETS', 'FP_PRESETS']
