# Copyright (c) gap_mm contributors. All rights reserved.
"""Export, slimming and the FLOPs of the layer types beyond conv and
linear: transposed convs (output channels on dim 1) and attention's packed
q, k, v projections."""
import pytest
import torch
from torch import nn

from gap_mm.analysis import zero_filter_flops
from gap_mm.export import load_sparse_state_dict, save_sparse_state_dict
from gap_mm.export.slim import apply_slimming, plan_slimming
from gap_mm.sparsity import (MagnitudeSparsifier, find_channel_groups,
                             select_prunable)
from gap_mm.sparsity.channels import TRANSPOSED_WHY


class Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2)
        self.up = nn.ConvTranspose2d(8, 6, 2, stride=2)
        self.fc = nn.Linear(16, 4)


def test_sparse_export_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = Net()
    sp = MagnitudeSparsifier(select_prunable(net), 0.8)
    sp.prune([0])
    path = tmp_path / 'net.safetensors'
    save_sparse_state_dict(net.state_dict(), path)
    loaded = load_sparse_state_dict(path)
    fresh = Net()
    fresh.load_state_dict(loaded)
    for key, value in net.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert int((fresh.attn.in_proj_weight != 0).sum()) == \
        sum(sp.block_keep['attn.in_proj_weight'])
    assert int((fresh.up.weight != 0).sum()) == sp.num_keep['up.weight']


def _conv_module(conv, bn):
    pytest.importorskip('mmcv')
    from mmcv.cnn import ConvModule
    module = ConvModule(
        conv.in_channels, conv.out_channels, 1, norm_cfg=dict(type='BN'))
    module.conv = conv
    module.bn = nn.BatchNorm2d(bn)
    return module


def test_slimming_leaves_a_transposed_conv_and_says_why():
    # PointNet++-style Sequential of ConvModules whose middle conv is
    # transposed: no channel group goes through it
    seq = nn.Sequential(
        _conv_module(nn.Conv2d(4, 8, 1), 8),
        _conv_module(nn.ConvTranspose2d(8, 8, 2, stride=2), 8),
        _conv_module(nn.Conv2d(8, 8, 1), 8))
    groups, skipped = find_channel_groups(seq)
    assert groups == []
    assert skipped == {'0.conv': TRANSPOSED_WHY, '1.conv': TRANSPOSED_WHY}
    # zero filters of the transposed conv (dim 1) are not cut
    with torch.no_grad():
        seq[1].conv.weight[:, :4] = 0
    plan = plan_slimming(seq)
    assert not plan.keep and plan.skipped == skipped
    shapes = [p.shape for p in seq.parameters()]
    apply_slimming(seq, plan)
    assert [p.shape for p in seq.parameters()] == shapes


def test_zero_filters_of_a_transposed_conv_lie_on_dim_1():
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.up.weight[:, :2] = 0  # 2 of the 6 output filters
        net.attn.in_proj_weight[:5] = 0  # 5 of q's output features
    sd = net.state_dict()
    layers = ['up.weight', 'attn.in_proj_weight']
    flops = {'': 1000, 'up': 600, 'attn': 400}
    out = zero_filter_flops(flops, sd, layers, {'up.weight': 1})
    assert (out['filters'], out['zero_filters']) == (6 + 48, 2 + 5)
    # the transposed conv saves 2/6 of its FLOPs; the attention's module
    # computes more than its projections, so it is not counted
    assert out['without_zero_filters'] == 1000 - 200
    assert set(out['by_layer']) == {'up.weight'}
    # without out_dims, dim 0 (input channels) would be read
    assert zero_filter_flops(flops, sd, ['up.weight'])['zero_filters'] == 0
