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


class Branching(nn.Module):
    """A network with a data-dependent branch, which a trace bakes in."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def _forward(self, x):
        y = self.conv(x)
        return y if bool(x.sum() > 0) else -y


class DetectorLike(nn.Module):
    """Conv, batch norm (which torchscript folds), max-pool, and a
    detector's nested outputs: a list per branch, a tensor per level."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(3, 2, 1))
        self.cls = nn.Conv2d(8, 2, 1)
        self.reg = nn.Conv2d(8, 4, 1)

    def _forward(self, x):
        levels = [self.stem(x)]
        levels.append(nn.functional.max_pool2d(levels[0], 2))
        return ([self.cls(f) for f in levels], [self.reg(f) for f in levels])


def _trained_stats(net):
    bn = net.stem[1]
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    return net.eval()


@pytest.mark.parametrize('runtime', ['channels-last', 'torchscript'])
def test_every_runtime_computes_the_eager_outputs(runtime):
    torch.manual_seed(0)
    net = _trained_stats(DetectorLike())
    weight = net.stem[0].weight.detach().clone()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        call = bench_latency.in_runtime(net, runtime, x)
        other = torch.rand(2, 3, 16, 16)
        got = bench_latency._flat(call(other))
        expected = bench_latency._flat(net._forward(other))
    assert [t.shape for t in got] == [t.shape for t in expected]
    assert [t.shape[1] for t in got] == [2, 2, 4, 4]
    assert all(torch.allclose(g, e, atol=1e-5) for g, e in zip(got, expected))
    # the model itself is left as it was (the runtimes convert copies)
    assert net.stem[0].weight.is_contiguous()
    assert torch.equal(net.stem[0].weight, weight)
    assert isinstance(net.stem[1], nn.BatchNorm2d)


def test_a_runtime_that_changes_the_outputs_is_refused():
    net = LayoutSensitive().eval()
    x = torch.rand(1, 3, 4, 4)
    assert bench_latency.in_runtime(net, 'eager', x) == net._forward
    with pytest.raises(RuntimeError, match='channels-last network.s '
                       'output 0 differs'):
        bench_latency.in_runtime(net, 'channels-last', x)
    # a trace that took one branch of a data-dependent choice: caught on
    # the second, negated input
    with pytest.raises(RuntimeError, match='torchscript network'):
        bench_latency.in_runtime(Branching().eval(), 'torchscript', x)
    with pytest.raises(ValueError, match="'onnx'"):
        bench_latency.in_runtime(net, 'onnx', x)


def test_outputs_that_are_not_tensors_are_named():
    assert len(bench_latency._flat(([torch.ones(1)], (torch.ones(2), )))) \
        == 2
    with pytest.raises(TypeError, match='dict'):
        bench_latency._flat({'cls': torch.ones(1)})


def test_breakdown_runs_channels_last(capsys):
    net = TinyNet().eval()
    layouts = []
    net.backbone.conv1.register_forward_pre_hook(
        lambda module, args: layouts.append(args[0].is_contiguous(
            memory_format=torch.channels_last)))
    flops = {'backbone.conv1': 1, 'backbone.layer1': 2, 'head': 3, '': 6}
    bench_latency.print_breakdown({'original': net}, {'original': flops},
                                  torch.rand(1, 3, 8, 8), 3,
                                  'channels-last')
    out = capsys.readouterr().out
    assert 'channels-last' in out
    assert '| backbone.layer1 |' in out
    # every call got channels-last input; the caller's model is not converted
    assert layouts and all(layouts)
    assert net.backbone.conv1.weight.is_contiguous()
    with pytest.raises(ValueError, match='torchscript'):
        bench_latency.print_breakdown({'original': net},
                                      {'original': flops},
                                      torch.rand(1, 3, 8, 8), 3,
                                      'torchscript')
