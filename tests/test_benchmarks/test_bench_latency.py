# Copyright (c) gap_mm contributors. All rights reserved.
"""bench_latency's per-part breakdown: the parts it names and that it
leaves the model as it found it (the figures are never asserted)."""
import os.path as osp
import sys

import torch
from torch import nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import bench_latency  # noqa: E402


class TinyNet(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.backbone.layer1 = nn.Sequential(
            nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(4, 2, 1)

    def _forward(self, x):
        x = self.backbone.conv1(x)
        return self.head(x + self.backbone.layer1(x))


def test_part_of_is_the_first_two_name_components():
    assert bench_latency.part_of('backbone.layer1.0.conv1') == \
        'backbone.layer1'
    assert bench_latency.part_of('bbox_head.retina_cls') == \
        'bbox_head.retina_cls'
    assert bench_latency.part_of('head') == 'head'


def test_breakdown_names_every_part_and_removes_its_hooks():
    net = TinyNet().eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        before = net._forward(x)
    times = bench_latency.breakdown(net, x, rounds=3)
    assert list(times) == [
        'backbone.conv1', 'backbone.layer1', 'head', 'between leaves',
        'total'
    ]
    timed = ('backbone.conv1', 'backbone.layer1', 'head', 'total')
    assert all(times[p] > 0 for p in timed)
    for module in net.modules():
        assert not module._forward_hooks
        assert not module._forward_pre_hooks
    with torch.no_grad():
        assert torch.equal(net._forward(x), before)
