# Copyright (c) gap_mm contributors. All rights reserved.
"""FLOPs with mmengine.analysis, and what all-zero filters save."""
import argparse

import pytest
import torch
from torch import nn

from gap_mm.analysis import (InputShapeAction, ReportError, check_input_shape,
                             module_flops, zero_filter_flops)
from gap_mm.errors import GaPConfigError


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 4, 1)

    def _forward(self, x):
        return self.conv2(torch.relu(self.bn(self.conv1(x))))


class NeedsSamples(TwoConvs):
    def _forward(self, x, data_samples=None):
        return self.conv2(x) + len(data_samples)


def test_module_flops_counts_each_conv_exactly():
    flops = module_flops(TwoConvs(), (3, 8, 8))
    assert flops['conv1'] == 8 * 3 * 9 * 64  # a multiply-add is one FLOP
    assert flops['conv2'] == 4 * 8 * 64
    assert flops[''] >= flops['conv1'] + flops['conv2'] + flops['bn']


def test_zero_filters_save_their_share_of_their_layer():
    model = TwoConvs()
    flops = module_flops(model, (3, 8, 8))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd['conv1.weight'][[1, 5]] = 0  # two whole filters
    sd['conv2.weight'][0, :3] = 0  # a partly zero filter saves nothing
    result = zero_filter_flops(flops, sd, ['conv1.weight', 'conv2.weight'])
    saved = flops['conv1'] * 2 // 8
    assert result['total'] == flops['']
    assert result['without_zero_filters'] == flops[''] - saved
    assert result['saved_fraction'] == pytest.approx(saved / flops[''])
    assert (result['filters'], result['zero_filters']) == (12, 2)
    assert [r['name'] for r in result['layers']] == ['conv1.weight']
    dense = zero_filter_flops(flops, model.state_dict(), ['conv1.weight'])
    assert dense['without_zero_filters'] == dense['total']


def test_a_model_that_needs_more_than_a_tensor_is_named():
    with pytest.raises(ReportError, match=r'NeedsSamples .* shape \[1, 3, 8, '
                       r'8\].*one image tensor'):
        module_flops(NeedsSamples(), (3, 8, 8))


def test_unstructured_zeros_count_as_the_flops_of_the_non_zero_weights():
    from gap_mm.analysis import format_report
    model = TwoConvs()
    flops = module_flops(model, (3, 8, 8))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd['conv1.weight'].view(-1)[::4] = 0  # 25% of the weights, no filter
    result = zero_filter_flops(flops, sd, ['conv1.weight', 'conv2.weight'])
    assert result['zero_filters'] == 0
    assert result['by_layer'] == {
        'conv1.weight': [flops['conv1'], flops['conv1'] * 3 // 4],
        'conv2.weight': [flops['conv2'], flops['conv2']]
    }
    assert result['nonzero'] == flops[''] - flops['conv1'] // 4
    report = dict(
        layers=[
            dict(
                name='conv1.weight',
                shape=[8, 3, 3, 3],
                numel=216,
                nonzero=162,
                sparsity=0.25,
                partition=0)
        ],
        partitions=[],
        prunable=dict(numel=216, nonzero=162, sparsity=0.25),
        model=dict(numel=300, nonzero=246, sparsity=0.18),
        flops=result)
    table = format_report(report)
    assert 'MFLOPs (non-zero)' in table.splitlines()[0]
    assert f"{flops['conv1'] / 1e6:.2f} ({flops['conv1'] * 3 / 4e6:.2f})" \
        in table


@pytest.mark.parametrize('shape', [(3, 160, 160), (512, 6), [1, 1]])
def test_an_image_or_a_point_cloud_shape_is_accepted(shape):
    assert check_input_shape(shape) == tuple(shape)


@pytest.mark.parametrize('shape', [(3, ), (3, 0, 160), (1, 2, 3, 4),
                                   (3, 1.5, 160), (True, 2), 7, None])
def test_any_other_shape_is_refused_by_name(shape):
    with pytest.raises(GaPConfigError, match=r'--flops-shape must be C H W '
                       r'\(an image\) or N C \(a point cloud\)'):
        check_input_shape(shape, '--flops-shape')


def test_the_argparse_action_checks_as_it_parses(capsys):
    parser = argparse.ArgumentParser(prog='tool')
    parser.add_argument(
        '--input-shape', type=int, nargs='+', action=InputShapeAction)
    assert parser.parse_args(['--input-shape', '3', '8', '8']).input_shape \
        == [3, 8, 8]
    assert parser.parse_args([]).input_shape is None
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(['--input-shape', '3', '8', '8', '1'])
    assert exc.value.code == 2
    assert ('tool: error: --input-shape must be C H W (an image) or N C (a '
            'point cloud) of positive ints, got [3, 8, 8, 1]'
            ) in capsys.readouterr().err
