# Copyright (c) gap_mm contributors. All rights reserved.
from mmcv.cnn import ConvModule
from mmdet3d.models.decode_heads.decode_head import Base3DDecodeHead
from mmdet3d.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class PartSegHead(Base3DDecodeHead):
    """Per-point part classifier of PointNet++ part segmentation.

    ``pre_seg_conv`` (1x1 ``Conv1d`` + BN + ReLU), dropout, and ``conv_seg``
    (1x1 ``Conv1d`` to ``num_classes`` part logits), as in the original
    PointNet++ part segmentation network. The loss is cross entropy over all
    ``num_classes`` parts (``loss_decode``, mmdet's ``CrossEntropyLoss`` by
    default); restricting the prediction to the parts of a shape's own
    category is the segmentor's post-processing.

    Args:
        in_channels (int): Channels of the input point features (the last
            feature-propagation layer's output). Defaults to 128.
        channels (int): Channels of ``pre_seg_conv``. Defaults to 128.
        num_classes (int): Number of parts (global part ids). Defaults to 50.
        dropout_ratio (float): Dropout before ``conv_seg``. Defaults to 0.5.
        **kwargs: Other arguments of mmdet3d's ``Base3DDecodeHead``
            (``conv_cfg``, ``norm_cfg``, ``act_cfg``, ``loss_decode``,
            ``ignore_index``, ``init_cfg``).
    """

    def __init__(self,
                 in_channels: int = 128,
                 channels: int = 128,
                 num_classes: int = 50,
                 dropout_ratio: float = 0.5,
                 **kwargs) -> None:
        super().__init__(
            channels=channels,
            num_classes=num_classes,
            dropout_ratio=dropout_ratio,
            **kwargs)
        self.in_channels = in_channels
        self.pre_seg_conv = ConvModule(
            in_channels,
            channels,
            kernel_size=1,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)

    def forward(self, feats: Tensor) -> Tensor:
        """Classify every point.

        Args:
            feats (Tensor): (B, in_channels, N) point features.

        Returns:
            Tensor: (B, num_classes, N) part logits.
        """
        return self.cls_seg(self.pre_seg_conv(feats))


__all__ = ['PartSegHead']
