# Copyright (c) gap_mm contributors. All rights reserved.
"""bench_latency's per-part breakdown (the parts it names, and that it
leaves the model as it found it) and its runtimes (each computes what the
eager model does, and one that does not is refused). The figures are never
asserted."""
import os.path as osp
import sys

import pytest
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


class LayoutSensitive(nn.Module):
    """A network whose result depends on the input's memory layout, as a
    wrong runtime conversion would make it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def _forward(self, x):
        y = self.conv(x)
        return y if x.is_contiguous() else -y


@pytest.mark.parametrize('runtime', bench_latency.RUNTIMES)
def test_every_runtime_computes_the_eager_outputs(runtime):
    torch.manual_seed(0)
    net = TinyNet().eval()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        expected = net._forward(x)
        call = bench_latency.in_runtime(net, runtime, x)
        other = torch.rand(2, 3, 8, 8)
        got = call(other)
        assert torch.allclose(got, net._forward(other), atol=1e-5)
    assert got.shape == expected.shape
    # the model itself is left as it was (channels-last converts a copy)
    assert net.backbone.conv1.weight.is_contiguous()


def test_a_runtime_that_changes_the_outputs_is_refused():
    net = LayoutSensitive().eval()
    x = torch.rand(1, 3, 4, 4)
    bench_latency.in_runtime(net, 'eager', x)
    with pytest.raises(RuntimeError, match='channels-last network'):
        bench_latency.in_runtime(net, 'channels-last', x)
    with pytest.raises(ValueError, match="'onnx'"):
        bench_latency.in_runtime(net, 'onnx', x)


def test_breakdown_runs_channels_last(capsys):
    net = TinyNet().eval()
    flops = {'backbone.conv1': 1, 'backbone.layer1': 2, 'head': 3, '': 6}
    bench_latency.print_breakdown({'original': net}, {'original': flops},
                                  torch.rand(1, 3, 8, 8), 3,
                                  'channels-last')
    out = capsys.readouterr().out
    assert 'channels-last' in out
    assert '| backbone.layer1 |' in out
    with pytest.raises(ValueError, match='torchscript'):
        bench_latency.print_breakdown({'original': net},
                                      {'original': flops},
                                      torch.rand(1, 3, 8, 8), 3,
                                      'torchscript')
