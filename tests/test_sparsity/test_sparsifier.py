# Copyright (c) gap_mm contributors. All rights reserved.
import pytest
import torch
from torch import nn

from gap_mm.sparsity import (MagnitudeSparsifier, RandomScore,
                             auto_partitions, erk_keep, num_kept, pack_mask,
                             regex_partitions, resolve_module_types,
                             select_prunable, unpack_mask)


class Net(nn.Module):
    """Stem conv, two blocks, a classifier: 5 prunable layers."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.block1 = nn.Sequential(nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16))
        self.block2 = nn.Sequential(nn.Conv2d(16, 16, 1), nn.Conv2d(16, 8, 3))
        self.fc = nn.Linear(8, 10)


def _net(seed=0):
    torch.manual_seed(seed)
    return Net()


NUMELS = {
    'stem.weight': 216,
    'block1.0.weight': 1152,
    'block2.0.weight': 256,
    'block2.1.weight': 1152,
    'fc.weight': 80
}


def _kept(sp):
    return {r['name']: r['kept'] for r in sp.layer_stats()}


def test_select_prunable_types_and_regexes():
    net = _net()
    assert dict(
        (k, v.numel()) for k, v in select_prunable(net).items()) == NUMELS
    sel = select_prunable(net, exclude=[r'^stem\.', r'^fc\.'])
    assert list(sel) == [
        'block1.0.weight', 'block2.0.weight', 'block2.1.weight'
    ]
    sel = select_prunable(net, module_types=[nn.Linear])
    assert list(sel) == ['fc.weight']
    sel = select_prunable(net, include=r'^block2\.')
    assert list(sel) == ['block2.0.weight', 'block2.1.weight']


@pytest.mark.parametrize('kwargs, message', [
    (dict(exclude=[r'^backbone\.']), r"exclude regex '\^backbone\\\\.' "
     r'matches no prunable parameter'),
    (dict(include=['nothing_here']), "include regex 'nothing_here' matches"),
    (dict(exclude=['.']), 'No prunable parameter is left'),
    (dict(exclude=['(']), 'not a valid regular expression'),
])
def test_select_prunable_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        select_prunable(_net(), **kwargs)


@pytest.mark.parametrize('sparsity', [0.5, 0.8, 0.9])
def test_uniform_exact_counts(sparsity):
    net = _net()
    sp = MagnitudeSparsifier(select_prunable(net), sparsity, 'uniform')
    sp.prune([0])
    for name, n in NUMELS.items():
        assert _kept(sp)[name] == n - round(sparsity * n)
        weight = sp.params[name]
        assert int((weight != 0).sum()) == n - round(sparsity * n)
        # the kept weights are the largest of the initial ones
        keep = sp.keep_mask(name)
        init = _net().state_dict()[name].abs()
        assert init[keep].min() >= init[~keep].max()


def test_global_exact_total_and_one_threshold():
    net = _net()
    init = {
        k: v.detach().abs().clone()
        for k, v in select_prunable(net).items()
    }
    sp = MagnitudeSparsifier(select_prunable(net), 0.8, 'global')
    sp.prune([0])
    total = sum(NUMELS.values())
    assert sum(_kept(sp).values()) == total - round(0.8 * total)
    kept_min = min(init[n][sp.keep_mask(n)].min() for n in NUMELS
                   if sp.keep_mask(n).any())
    dropped_max = max(init[n][~sp.keep_mask(n)].max() for n in NUMELS)
    assert kept_min >= dropped_max
    # not uniform: the wide-fan-in layers lose more
    assert len({round(1 - _kept(sp)[n] / NUMELS[n], 2) for n in NUMELS}) > 1


def test_global_reprune_of_one_partition_keeps_its_budget():
    net = _net()
    sp = MagnitudeSparsifier(select_prunable(net), 0.8, 'global', partitions=2)
    sp.prune([0, 1])
    before = _kept(sp)
    budget = sum(before[n] for n in sp.partitions[1])
    sp.grow([1])
    with torch.no_grad():
        for n in sp.partitions[1]:
            sp.params[n].add_(torch.randn_like(sp.params[n]))
    sp.prune([1])
    after = _kept(sp)
    assert sum(after[n] for n in sp.partitions[1]) == budget
    assert all(after[n] == before[n] for n in sp.partitions[0])


def test_erk_counts_match_rigl_formula():
    shapes = {n: p.shape for n, p in select_prunable(_net()).items()}
    keep = erk_keep(shapes, 0.8)
    total = sum(NUMELS.values())
    # Densities proportional to sum(shape)/prod(shape), capped at 1:
    # solve eps, move the layers it would overfill to dense, repeat.
    raw = {n: sum(s) / NUMELS[n] for n, s in shapes.items()}
    dense = set()
    while True:
        eps = ((1 - 0.8) * total - sum(NUMELS[n] for n in dense)) / sum(
            raw[n] * NUMELS[n] for n in raw if n not in dense)
        over = {n for n in raw if n not in dense and eps * raw[n] > 1}
        if not over:
            break
        dense |= over
    for n in raw:
        want = NUMELS[n] if n in dense else round(eps * raw[n] * NUMELS[n])
        assert keep[n] == want
    assert abs(sum(keep.values()) - 0.2 * total) <= len(keep)
    net = _net()
    sp = MagnitudeSparsifier(select_prunable(net), 0.8, 'erk')
    sp.prune([0])
    assert _kept(sp) == dict(keep)


def test_overrides_on_top_of_distribution():
    net = _net()
    sp = MagnitudeSparsifier(
        select_prunable(net),
        0.8,
        'uniform',
        overrides={
            r'^stem\.': 0.5,
            r'^fc\.': 0.0
        })
    sp.prune([0])
    kept = _kept(sp)
    assert kept['stem.weight'] == 108
    assert kept['fc.weight'] == 80
    assert kept['block1.0.weight'] == 1152 - round(0.8 * 1152)
    with pytest.raises(ValueError, match="override regex 'nope'"):
        MagnitudeSparsifier(select_prunable(net), 0.8, overrides={'nope': 0.5})


def test_nm_pattern_counts():
    net = _net()
    sp = MagnitudeSparsifier(
        select_prunable(net, exclude=[r'^stem\.']),
        pattern='2:4',
        partitions=2)
    sp.prune([0, 1])
    for name, kept in _kept(sp).items():
        assert kept == NUMELS[name] // 2
        w = sp.params[name]
        runs = (w != 0).movedim(1, -1).reshape(-1, 4)
        assert (runs.sum(1) <= 2).all()
    with pytest.raises(ValueError, match='input dimension must divide by 4'):
        MagnitudeSparsifier(select_prunable(net), pattern='2:4')


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(sparsity=1.0), ValueError, r'sparsity must be in \[0, 1\), but '
     r'got 1.0'),
    (dict(sparsity=-0.1), ValueError, r'sparsity must be in \[0, 1\)'),
    (dict(sparsity='0.8'), ValueError, 'sparsity must be a number'),
    (dict(pattern='4:2'), ValueError, r'0 < N < M, but got N=4, M=4|'
     r'0 < N < M, but got N=4, M=2'),
    (dict(pattern='2:2'), ValueError, '0 < N < M'),
    (dict(pattern='dense'), ValueError, "'unstructured' or 'N:M'"),
    (dict(distribution='random'), ValueError, 'distribution must be one of'),
    (dict(partitions=6), ValueError, 'partitions=6 is more than the 5 '
     'prunable layers'),
    (dict(partitions=0), ValueError, 'positive int'),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        MagnitudeSparsifier(select_prunable(_net()), **kwargs)


def test_auto_partitions_contiguous_and_balanced():
    groups = auto_partitions(NUMELS, 2)
    assert groups == [['stem.weight', 'block1.0.weight'],
                      ['block2.0.weight', 'block2.1.weight', 'fc.weight']]
    groups = auto_partitions(NUMELS, 5)
    assert groups == [[n] for n in NUMELS]
    numels = {f'l{i}': 10 for i in range(8)}
    assert [len(g) for g in auto_partitions(numels, 4)] == [2, 2, 2, 2]


def test_regex_partitions_and_their_errors():
    names = list(NUMELS)
    groups = regex_partitions(names, [r'^stem|^block1', r'^block2', [r'^fc']])
    assert groups == [['stem.weight', 'block1.0.weight'],
                      ['block2.0.weight', 'block2.1.weight'], ['fc.weight']]
    with pytest.raises(ValueError) as info:
        regex_partitions(names, [r'^stem', r'^block', r'block2\.1'])
    msg = str(info.value)
    assert "1 prunable layer(s) are in no partition: ['fc.weight']" in msg
    assert 'block2.1.weight (partitions [1, 2])' in msg
    with pytest.raises(ValueError, match="partition 1 'head' matches no"):
        regex_partitions(names, ['.', 'head'])


def test_grow_then_prune_cycle_and_dense_partitions():
    net = _net()
    sp = MagnitudeSparsifier(select_prunable(net), 0.8, partitions=2)
    assert sp.dense_partitions == {0, 1}
    sp.prune([0, 1])
    assert sp.dense_partitions == set()
    old = {n: sp.keep_mask(n) for n in sp.partitions[0]}
    grown = sp.grow([0])
    assert sp.dense_partitions == {0}
    assert set(grown) == set(sp.partitions[0])
    for name in sp.partitions[0]:
        assert torch.equal(grown[name], ~old[name])
        # regrown weights start at exactly zero
        assert (sp.params[name][grown[name]] == 0).all()
        assert sp.keep_mask(name) is None


@pytest.mark.parametrize('opt_cls, kwargs', [
    (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-2)),
    (torch.optim.Adam, dict(lr=0.1)),
    (torch.optim.AdamW, dict(lr=0.1, weight_decay=0.1, amsgrad=True)),
    (torch.optim.RMSprop, dict(lr=0.01, momentum=0.5)),
])
def test_zero_optimizer_state_at_pruned_positions(opt_cls, kwargs):
    net = _net()
    params = select_prunable(net)
    opt = opt_cls(net.parameters(), **kwargs)
    for _ in range(2):
        for p in net.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
    sp = MagnitudeSparsifier(params, 0.8)
    new = sp.prune([0])
    touched = sp.zero_optimizer_state_(opt, new)
    assert touched > 0
    for name, pruned in new.items():
        for value in opt.state[params[name]].values():
            if torch.is_tensor(value) and value.shape == pruned.shape:
                assert (value[pruned] == 0).all()
                assert (value[~pruned] != 0).any()
    # One masked step keeps pruned weights exactly zero.
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    sp.mask_grads_()
    opt.step()
    sp.apply_masks_()
    for name in params:
        assert (params[name][~sp.keep_mask(name)] == 0).all()


@pytest.mark.parametrize('second_moment', ['mean', 'zero'])
def test_regrown_state_momentum_zero_second_moment_mean(second_moment):
    net = _net()
    params = select_prunable(net)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1, amsgrad=True)
    sp = MagnitudeSparsifier(params, 0.8, partitions=2)
    sp.prune([0, 1])
    for _ in range(3):
        for p in net.parameters():
            p.grad = torch.randn_like(p)
        sp.mask_grads_()
        opt.step()
        sp.apply_masks_()
    grown = sp.grow([0])
    before = {
        name: {k: v.clone()
               for k, v in opt.state[params[name]].items()}
        for name in grown
    }
    assert sp.init_regrown_state_(opt, grown, second_moment) == 3 * len(grown)
    for name, where in grown.items():
        state = opt.state[params[name]]
        assert (state['exp_avg'][where] == 0).all()
        for key in ('exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'):
            value = state[key]
            # the positions that stayed are untouched
            assert torch.equal(value[~where], before[name][key][~where])
            if key == 'exp_avg':
                continue
            expected = value[~where].mean() if second_moment == 'mean' \
                else 0.0
            assert (value[where] == expected).all(), (name, key)
            assert (value[~where] > 0).all()
    with pytest.raises(
            ValueError,
            match=r"one of \('mean', 'zero'\), but got 'avg'"):
        sp.init_regrown_state_(opt, grown, 'avg')


@pytest.mark.parametrize('second_moment, bound', [('mean', 1.0),
                                                  ('zero', None)])
def test_regrown_adam_updates_are_not_amplified(second_moment, bound):
    # Adam's bias correction is per tensor: after 500 steps, positions whose
    # moments restart at 0 take steps of (1 - b1^k) / sqrt(1 - b2^k) times
    # the learning rate, about 3x to 6x, unless the second moment starts at
    # the tensor's level.
    torch.manual_seed(0)
    layer = nn.Linear(64, 64, bias=False)
    params = select_prunable(layer)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    sp = MagnitudeSparsifier(params, 0.5)
    sp.prune([0])
    grad = torch.randn(64, 64) * 1e-2
    for _ in range(500):
        layer.weight.grad = grad.clone()
        sp.mask_grads_()
        opt.step()
        sp.apply_masks_()
    grown = sp.grow([0])['weight']
    sp.init_regrown_state_(opt, {'weight': grown}, second_moment)
    largest = 0.0
    for _ in range(20):
        before = layer.weight.detach().clone()
        layer.weight.grad = grad.clone()
        opt.step()
        step = (layer.weight.detach() - before)[grown].abs().median()
        largest = max(largest, step.item() / 1e-3)
    # The median regrown weight moves, at its worst step, ...
    if bound is None:
        assert largest > 3.0  # ... several learning rates
    else:
        assert largest <= bound  # ... at most one, as a trained weight does


def test_state_dict_round_trip_is_bit_packed():
    net = _net()
    sp = MagnitudeSparsifier(select_prunable(net), 0.8, 'global', partitions=2)
    sp.prune([0, 1])
    sp.grow([1])
    state = sp.state_dict()
    assert set(state['masks']) == set(sp.partitions[0])
    for name, entry in state['masks'].items():
        assert entry['packed'].dtype == torch.uint8
        assert entry['packed'].numel() == (NUMELS[name] + 7) // 8
        assert torch.equal(unpack_mask(entry, name), sp.keep_mask(name))
    fresh_net = _net(seed=1)
    fresh = MagnitudeSparsifier(
        select_prunable(fresh_net), 0.8, 'global', partitions=2)
    fresh.load_state_dict(state)
    assert fresh.dense_partitions == {1}
    assert torch.equal(fresh.fingerprint(), sp.fingerprint())
    for name in sp.partitions[0]:
        assert (fresh.params[name][~fresh.keep_mask(name)] == 0).all()
    other = MagnitudeSparsifier(select_prunable(_net()), 0.8, partitions=3)
    with pytest.raises(ValueError, match='other partitions than'):
        other.load_state_dict(state)


def test_unpack_mask_rejects_bad_entries():
    entry = pack_mask(torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match='needs 2 bytes of uint8'):
        unpack_mask(dict(shape=[3, 5], packed=entry['packed'][:1]), 'w')
    with pytest.raises(ValueError, match='must be a dict'):
        unpack_mask({'shape': [3]}, 'w')


def test_fingerprint_detects_a_moved_mask_bit():
    net = _net()
    sp = MagnitudeSparsifier(select_prunable(net), 0.8)
    sp.prune([0])
    before = sp.fingerprint().clone()
    word = sp._words['fc.weight'].view(-1)
    i = int((word == 0).nonzero()[0])
    j = int((word != 0).nonzero()[0])
    word[i], word[j] = -1, 0  # move one pruned position
    assert not torch.equal(before, sp.fingerprint())


def test_fingerprint_tells_apart_masks_with_equal_index_sums():
    # Pruned sets {0, 4, 5} and {1, 2, 6} of an 8-weight layer have the same
    # count, index sum and sum of squares: a summary of the indices cannot
    # tell them apart, a digest of the mask bytes does.
    fingerprints = []
    for pruned in ([0, 4, 5], [1, 2, 6]):
        layer = nn.Linear(8, 1, bias=False)
        sp = MagnitudeSparsifier({'w': layer.weight}, 0.5)
        mask = torch.zeros(1, 8, dtype=torch.bool)
        mask[0, pruned] = True
        sp.set_masks({'w': mask})
        fingerprints.append(sp.fingerprint())
    assert fingerprints[0][0, 0] == fingerprints[1][0, 0] == 3
    assert not torch.equal(fingerprints[0], fingerprints[1])
    dense = MagnitudeSparsifier({'w': nn.Linear(8, 1).weight}, 0.5)
    assert dense.fingerprint().tolist() == [[-1, -1]]


def test_random_initial_mask_is_seeded_and_exact():
    masks = []
    for seed in (0, 0, 1):
        net = _net(seed=seed + 10)  # other weights: the mask must not care
        sp = MagnitudeSparsifier(select_prunable(net), 0.75, partitions=2)
        sp.prune([0, 1], score=RandomScore(seed=seed))
        for row in sp.layer_stats():
            assert row['kept'] == num_kept(row['numel'], 0.75), row
        masks.append({n: sp.keep_mask(n) for n in sp.names})
    assert all(torch.equal(masks[0][n], masks[1][n]) for n in masks[0])
    assert not all(torch.equal(masks[0][n], masks[2][n]) for n in masks[0])
    # not the magnitude mask
    net = _net(seed=10)
    mag = MagnitudeSparsifier(select_prunable(net), 0.75, partitions=2)
    mag.prune([0, 1])
    assert not torch.equal(mag.keep_mask('block1.0.weight'),
                           masks[0]['block1.0.weight'])


def test_set_masks_reports_newly_pruned_and_grown_positions():
    net = _net()
    sp = MagnitudeSparsifier(select_prunable(net), 0.5)
    sp.prune([0])
    name = 'fc.weight'
    old = sp.pruned_mask(name).clone()
    new = old.clone().view(-1)
    drop = int((~new).nonzero()[0])  # a kept position is pruned
    grow = int(new.nonzero()[0])  # a pruned one is kept
    new[drop], new[grow] = True, False
    with torch.no_grad():
        sp.params[name].view(-1)[drop] = 3.0
    pruned, grown = sp.set_masks({name: new.view_as(old)})
    assert pruned[name].view(-1).nonzero().flatten().tolist() == [drop]
    assert grown[name].view(-1).nonzero().flatten().tolist() == [grow]
    assert sp.params[name].view(-1)[drop] == 0  # zeroed at once
    assert int(sp.pruned_mask(name).sum()) == int(old.sum())
    # None makes a layer dense; everything it pruned is reported grown
    pruned, grown = sp.set_masks({name: None})
    assert not sp.is_sparse(name) and pruned == {}
    assert torch.equal(grown[name], new.view_as(old))
    with pytest.raises(KeyError, match='not a prunable parameter'):
        sp.set_masks({'nope': None})
    with pytest.raises(ValueError, match='has shape'):
        sp.set_masks({name: torch.zeros(3, dtype=torch.bool)})


def test_set_sparsity_changes_the_targets_of_the_next_prune():
    net = _net()
    sp = MagnitudeSparsifier(
        select_prunable(net), 0.5, overrides={r'^fc\.': 0.25})
    sp.prune([0])
    sp.set_sparsity(0.9)
    sp.prune([0])
    for row in sp.layer_stats():
        expected = 0.25 if row['name'] == 'fc.weight' else 0.9
        assert row['kept'] == num_kept(row['numel'], expected), row
    with pytest.raises(ValueError, match=r'sparsity must be in \[0, 1\)'):
        sp.set_sparsity(1.5)
    nm = MagnitudeSparsifier(
        select_prunable(net, include=r'^block2\.0\.'), pattern='2:4')
    with pytest.raises(ValueError, match='fixed sparsity 1 - N/M'):
        nm.set_sparsity(0.9)


def test_apply_masks_to_other_tensors_by_name():
    net = _net()
    sp = MagnitudeSparsifier(select_prunable(net), 0.5)
    sp.prune([0])
    copies = {n: torch.ones_like(p) for n, p in sp.params.items()}
    sp.apply_masks_to_(copies)
    for name, tensor in copies.items():
        assert torch.equal(tensor != 0, sp.keep_mask(name)), name


def test_score_and_sparsifier_come_from_the_registries():
    from gap_mm.registry import SCORES, SPARSIFIERS

    @SCORES.register_module(name='test_negative_magnitude', force=True)
    class NegativeMagnitude:

        def __call__(self, name, param):
            return -param.detach().abs()

    try:
        net = _net()
        sp = SPARSIFIERS.build(
            dict(
                type='MagnitudeSparsifier',
                score=dict(type='test_negative_magnitude')),
            default_args=dict(params=select_prunable(net), sparsity=0.5))
        weight = sp.params['fc.weight'].detach().clone()
        sp.prune([0])
        keep = sp.keep_mask('fc.weight')
        # the smallest magnitudes survive
        assert weight[keep].abs().max() <= weight[~keep].abs().min()
    finally:
        SCORES.module_dict.pop('test_negative_magnitude')
    with pytest.raises(ValueError, match="unknown score type 'nope'"):
        MagnitudeSparsifier(select_prunable(net), score=dict(type='nope'))


def test_module_types_from_torch_and_from_mmengine_models():
    from mmcv.cnn import ConvWS2d
    assert resolve_module_types(['Conv2d', 'Linear']) == (nn.Conv2d,
                                                          nn.Linear)
    # names registered in MMEngine's MODELS (mmcv's layers) work too
    assert resolve_module_types(['ConvWS']) == (ConvWS2d, )
    assert resolve_module_types(None) is None
    with pytest.raises(ValueError, match="'Conv9d' is not a layer type"):
        resolve_module_types(['Conv9d'])
    with pytest.raises(ValueError, match='is not a layer type'):
        resolve_module_types([42])
