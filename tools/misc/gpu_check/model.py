# Copyright (c) gap_mm contributors. All rights reserved.
"""A RetinaNet R50-FPN in plain torch, for the device check's timings.

:class:`SyntheticRetinaNet` has the conv layers of mmdet's
``retinanet_r50_fpn`` (ResNet-50, an FPN over C3-C5 with P6 and P7 on C5,
four 3x3 convs per head tower, 80 classes and 9 anchors per position),
without torchvision, mmcv or mmdet, so that the engine's masks, prune events
and masking cost can be measured on a GPU before mmcv is built there. Its
loss is the mean square of the head outputs: a real forward and backward of
that size, not a detection loss.

At ``width=64`` it holds 37.97 M parameters, as mmdet's RetinaNet R50-FPN
does; ``width=16`` (2.71 M) keeps every layer at a quarter of the
channels, for a quick run on the CPU.
"""
from typing import List, Tuple

import torch
from torch import nn


class _Bottleneck(nn.Module):
    """ResNet's 1x1-3x3-1x1 block (the stride on the 3x3, as mmdet's
    ``style='pytorch'``)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride, bias=False),
                nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class SyntheticRetinaNet(nn.Module):
    """ResNet-50 + FPN + RetinaNet head in plain torch.

    Args:
        width (int): Channels of the stem; the stages have ``width`` to
            ``8 * width`` planes and the FPN ``4 * width`` channels.
            Defaults to 64 (ResNet-50).
        num_classes (int): Classes of the classification head. Defaults to
            80.
        num_anchors (int): Anchors per position. Defaults to 9.
    """

    def __init__(self,
                 width: int = 64,
                 num_classes: int = 80,
                 num_anchors: int = 9) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes, stages = width, []
        for i, blocks in enumerate((3, 4, 6, 3)):
            planes = width * 2**i
            layer = []
            for j in range(blocks):
                layer.append(
                    _Bottleneck(inplanes, planes, 2 if i and not j else 1))
                inplanes = planes * _Bottleneck.expansion
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        fpn = 4 * width
        c3, c4, c5 = 8 * width, 16 * width, 32 * width
        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(c, fpn, 1) for c in (c3, c4, c5))
        self.fpn_convs = nn.ModuleList(
            nn.Conv2d(fpn, fpn, 3, 1, 1) for _ in range(3))
        self.p6 = nn.Conv2d(c5, fpn, 3, 2, 1)
        self.p7 = nn.Conv2d(fpn, fpn, 3, 2, 1)
        self.cls_convs = nn.ModuleList(
            nn.Conv2d(fpn, fpn, 3, 1, 1) for _ in range(4))
        self.reg_convs = nn.ModuleList(
            nn.Conv2d(fpn, fpn, 3, 1, 1) for _ in range(4))
        self.retina_cls = nn.Conv2d(fpn, num_anchors * num_classes, 3, 1, 1)
        self.retina_reg = nn.Conv2d(fpn, num_anchors * 4, 3, 1, 1)

    def _pyramid(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        laterals = [
            conv(c) for conv, c in zip(self.lateral_convs, (c3, c4, c5))
        ]
        for i in (2, 1):  # top-down
            laterals[i - 1] = laterals[i - 1] + nn.functional.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode='nearest')
        outs = [conv(p) for conv, p in zip(self.fpn_convs, laterals)]
        p6 = self.p6(c5)
        outs += [p6, self.p7(self.relu(p6))]
        return outs

    def forward(self,
                x: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Class scores and box deltas at each of the five levels."""
        results = []
        for feat in self._pyramid(x):
            cls, reg = feat, feat
            for conv in self.cls_convs:
                cls = self.relu(conv(cls))
            for conv in self.reg_convs:
                reg = self.relu(conv(reg))
            results.append((self.retina_cls(cls), self.retina_reg(reg)))
        return results

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean square of every head output, summed over the levels, in
        float32 (also under autocast)."""
        return sum(
            cls.float().square().mean() + reg.float().square().mean()
            for cls, reg in self(x))
