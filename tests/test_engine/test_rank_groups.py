# Copyright (c) gap_mm contributors. All rights reserved.
"""Rank-group layout, the group-aware samplers and the coverage rule of
parallel GaP, on one process."""
import itertools
from unittest import mock

import pytest
import torch
from torch import nn

from gap_mm.engine import (GroupDefaultSampler, GroupInfiniteSampler,
                           covered_tensors, group_layout)
from gap_mm.errors import GaPConfigError

SAMPLER = 'gap_mm.engine.samplers.group_sampler.get_dist_info'


def test_layout_of_consecutive_ranks():
    assert [tuple(group_layout(r, 4, 2)) for r in range(4)] == [(0, 0, 2, 2),
                                                                (0, 1, 2, 2),
                                                                (1, 0, 2, 2),
                                                                (1, 1, 2, 2)]
    assert group_layout(3, 4, 2).leader(1) == 2
    with pytest.raises(
            GaPConfigError,
            match='6 processes into 4 rank groups .* not a '
            'multiple of 4'):
        group_layout(0, 6, 4)
    # the hint names numbers of partitions that divide the world, never the
    # number that does not
    with pytest.raises(GaPConfigError) as err:
        group_layout(0, 3, 2)
    assert str(err.value).endswith(
        '(tools/dist_train.sh CONFIG 2) or use 3 partitions (a number that '
        'divides 3)')
    with pytest.raises(GaPConfigError, match='or use 2 or 3 or 6 partitions'):
        group_layout(0, 6, 4)


def _infinite(rank, world, groups=2, group_samples=6, size=10):
    with mock.patch(SAMPLER, return_value=(rank, world)):
        sampler = GroupInfiniteSampler(
            list(range(size)), groups, group_samples, seed=3)
    return list(itertools.islice(iter(sampler), group_samples + 8))


def test_infinite_sampler_shards_over_the_group_then_the_world():
    ranks = [_infinite(r, 4) for r in range(4)]
    # the rounds: both groups read the same sequence, split over their ranks
    assert ranks[0][:6] == ranks[2][:6] and ranks[1][:6] == ranks[3][:6]
    with mock.patch(SAMPLER, return_value=(0, 1)):
        one = GroupInfiniteSampler(list(range(10)), 1, 0, seed=3)
    reference = list(itertools.islice(one._infinite_indices(), 12 + 32))
    assert sorted(ranks[0][:6] + ranks[1][:6]) == sorted(reference[:12])
    assert ranks[0][:6] == reference[0:12:2]
    # the fine-tune: the continuation, split over all 4 ranks
    tail = [r[6:] for r in ranks]
    assert tail[0] == reference[12::4][:8] and tail[3] == reference[15::4][:8]
    # a pure function of the position: a second sampler repeats it
    assert _infinite(1, 4) == ranks[1]


def test_default_sampler_switches_sharding_at_the_epoch():
    with mock.patch(SAMPLER, return_value=(3, 4)):
        sampler = GroupDefaultSampler(
            list(range(10)), num_groups=2, group_epochs=2, seed=0)
    assert len(sampler) == 5  # 10 over the 2 ranks of the group
    in_round = list(sampler)
    sampler.set_epoch(2)
    assert len(sampler) == 3  # over all 4 ranks
    assert len(list(sampler)) == 3
    sampler.set_epoch(0)
    assert list(sampler) == in_round
    with pytest.raises(GaPConfigError, match='group_epochs must be an int'):
        with mock.patch(SAMPLER, return_value=(0, 2)):
            GroupDefaultSampler(list(range(4)), 2, group_epochs=-1)


class Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.stem_bn = nn.BatchNorm2d(4)
        self.a = nn.Conv2d(4, 4, 3)
        self.a_bn = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 4, 3)
        self.head = nn.Linear(4, 2)


def test_coverage_follows_layers_or_regexes():
    net = Net()
    prunable = {'a.weight': 0, 'b.weight': 1}
    owner = covered_tensors(net, prunable, 2)
    # automatic: a layer's tensors and the norm after it are its
    # partition's; an excluded layer starts an uncovered run
    assert owner['a.bias'] == owner['a_bn.weight'] == 0
    assert owner['a_bn.running_mean'] == owner['a_bn.num_batches_tracked'] == 0
    assert owner['b.weight'] == owner['b.bias'] == 1
    assert owner['stem.weight'] is owner['stem_bn.bias'] is None
    assert owner['head.weight'] is None
    # regex partitions cover what their regexes match
    owner = covered_tensors(net, prunable, [r'^a', [r'^b\.']])
    assert owner['a_bn.running_var'] == 0 and owner['b.bias'] == 1
    assert owner['stem.weight'] is None
    with pytest.raises(GaPConfigError, match='match the regexes of two'):
        covered_tensors(net, prunable, [r'^a', r'bn'])
    assert set(owner) == set(net.state_dict())
    assert all(isinstance(k, str) for k in owner)
    assert torch.is_tensor(net.a_bn.num_batches_tracked)
