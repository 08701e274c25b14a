# Copyright (c) gap_mm contributors. All rights reserved.
"""Today's mask events give the masks, counts, weights and optimizer state
of the implementation before issue 33 (``benchmarks/events_before.py``) bit
for bit, on random weights with and without ties, through both paths of the
exact top-k (the sampled bracket is forced onto small tensors)."""
import os.path as osp
import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn

from gap_mm.engine.hooks.set_hook import _ScoresOnAccess
from gap_mm.sparsity import (MagnitudeSparsifier, RandomScore, drop_and_grow,
                             keep_word, num_to_move, reset_optimizer_state_,
                             topk_masks, topk_positions, zero_pruned_)
from gap_mm.sparsity import masks as masks_module
from gap_mm.sparsity import topk as topk_module
from gap_mm.utils.digest import tensor_digest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import events_before as before  # noqa: E402


@pytest.fixture(params=['plain', 'bracket'])
def path(request, monkeypatch):
    """Run a test with the plain kthvalue, then with the sampled bracket
    from 256 scores up (a sample of at least 64)."""
    if request.param == 'bracket':
        monkeypatch.setattr(topk_module, '_BRACKET_MIN_NUMEL', 256)
        monkeypatch.setattr(topk_module, '_SAMPLE_MIN', 64)
    else:
        monkeypatch.setattr(topk_module, '_BRACKET_MIN_NUMEL', 1 << 40)
    return request.param


def _scores(kind, n, gen):
    x = torch.rand(n, generator=gen)
    if kind == 'ties':  # quantised: many equal values
        return torch.round(x * 16) / 16
    if kind == 'zeros':  # an already sparse layer
        return x * (torch.rand(n, generator=gen) < 0.3)
    return x


@pytest.mark.parametrize('kind', ['rand', 'ties', 'zeros'])
def test_topk_masks_match_before(path, kind):
    gen = torch.Generator().manual_seed(1)
    scores = [
        _scores(kind, 3000, gen).view(30, 100),
        _scores(kind, 700, gen),
        torch.zeros(50)
    ]
    total = 3750
    for k in (1, 37, total // 5, total // 2, 3001, total - 1):
        for pruned in (False, True):
            got = topk_masks(scores, k, pruned=pruned)
            want = before.topk_masks(scores, k, pruned=pruned)
            for g, w in zip(got, want):
                assert torch.equal(g, w), (k, pruned)
        for s in scores[:2]:
            if k <= s.numel():
                assert torch.equal(
                    topk_masks([s], k)[0],
                    before.topk_masks([s], k)[0]), k


@pytest.mark.parametrize('kind', ['rand', 'ties', 'zeros'])
def test_topk_positions_are_the_topk_among_the_eligible(path, kind):
    gen = torch.Generator().manual_seed(2)
    score = _scores(kind, 5000, gen).view(50, 100)
    eligible = torch.rand(50, 100, generator=gen) < 0.8
    idx = eligible.reshape(-1).nonzero().squeeze(1)
    for k in (0, 1, 40, 500, idx.numel() // 2, idx.numel()):
        want = idx[before.topk_masks([score.reshape(-1)[idx]], k)[0]]
        assert torch.equal(topk_positions(score, k, eligible), want), k
    everything = before.topk_masks([score], 300)[0].reshape(-1)
    assert torch.equal(
        topk_positions(score, 300),
        everything.nonzero().squeeze(1))


@pytest.mark.parametrize('density', [0.2, 0.5, 0.9])
def test_drop_and_grow_matches_before(path, density):
    gen = torch.Generator().manual_seed(3)
    pruned = torch.rand(40, 80, generator=gen) > density
    weight = torch.randn(40, 80, generator=gen) * ~pruned
    grow = torch.round(torch.rand(40, 80, generator=gen) * 8) / 8
    active, inactive = int((~pruned).sum()), int(pruned.sum())
    for k in sorted({0, 1, min(active, inactive) // 3,
                     min(active, inactive)}):
        got = drop_and_grow(pruned, weight.abs(), grow, k)
        assert torch.equal(
            got, before.drop_and_grow(pruned, weight.abs(), grow, k)), k
        assert int((~got).sum()) == active


def _layers(seed, zeros=False):
    gen = torch.Generator().manual_seed(seed)
    shapes = OrderedDict([('a', (64, 32, 3, 3)), ('b', (500, 40)),
                          ('c', (10, 500)), ('d', (7, 9))])
    params = OrderedDict()
    for name, shape in shapes.items():
        value = torch.randn(shape, generator=gen)
        if zeros:  # ties: regrown weights at 0, quantised values
            value = torch.round(value * 4) / 4
        params[name] = nn.Parameter(value)
    return params


def _optimizer(params, kind, seed):
    gen = torch.Generator().manual_seed(seed)
    if kind == 'sgd':
        opt = torch.optim.SGD(params.values(), lr=0.1, momentum=0.9)
        for p in params.values():
            opt.state[p]['momentum_buffer'] = torch.randn(
                p.shape, generator=gen)
    else:
        opt = torch.optim.AdamW(params.values(), lr=0.1)
        for p in params.values():
            opt.state[p] = dict(
                step=torch.tensor(5.0),
                exp_avg=torch.randn(p.shape, generator=gen),
                exp_avg_sq=torch.rand(p.shape, generator=gen))
    return opt


def _same_state(a, b, opt_a, opt_b):
    assert list(a._words) == list(b._words)
    for name in a.names:
        mask = a.pruned_mask(name)
        if mask is None:
            assert b.pruned_mask(name) is None
            continue
        assert torch.equal(mask, b.pruned_mask(name)), name
        assert torch.equal(a.params[name], b.params[name]), name
        state_a, state_b = opt_a.state[a.params[name]], opt_b.state[
            b.params[name]]
        for key, value in state_a.items():
            assert torch.equal(value, state_b[key]), (name, key)
    assert dict(a.num_keep) == dict(b.num_keep)  # the same targets


def _pair(distribution, opt_kind, zeros=False, **kwargs):
    out = []
    for cls in (before.SparsifierBefore, MagnitudeSparsifier):
        params = _layers(0, zeros)
        sp = cls(params, 0.8, distribution, partitions=2, **kwargs)
        out.append((sp, _optimizer(params, opt_kind, 1)))
    return out


@pytest.mark.parametrize('distribution', ['uniform', 'global', 'erk'])
@pytest.mark.parametrize('zeros', [False, True])
def test_prune_events_match_before(path, distribution, zeros):
    (old, opt_old), (new, opt_new) = _pair(
        distribution, 'sgd', zeros, overrides={'^d$': 0.5})
    for sp, opt in ((old, opt_old), (new, opt_new)):
        sp.zero_optimizer_state_(opt, sp.prune([0, 1]))
        sp.grow([1])
        with torch.no_grad():  # the grown partition trained
            for name in sp.partitions[1]:
                sp.params[name].mul_(-1.5)
        sp.zero_optimizer_state_(opt, sp.prune([1]))
        if distribution != 'global':
            sp.set_sparsity(0.9)  # a GMP step
            sp.zero_optimizer_state_(opt, sp.prune([0, 1]))
    _same_state(old, new, opt_old, opt_new)
    assert torch.equal(old.fingerprint(), new.fingerprint())


@pytest.mark.parametrize('opt_kind', ['sgd', 'adam'])
@pytest.mark.parametrize('grow', ['gradient', 'random'])
@pytest.mark.parametrize('zeros', [False, True])
def test_drop_and_grow_updates_match_before(path, opt_kind, grow, zeros):
    (old, opt_old), (new, opt_new) = _pair('uniform', opt_kind, zeros)
    gen = torch.Generator().manual_seed(4)
    grads = {
        n: torch.round(torch.rand(p.shape, generator=gen) * 6)
        for n, p in old.params.items()
    }
    for sp in (old, new):
        sp.prune([0, 1], score=RandomScore(3))
    for fraction in (0.3, 0.05):
        # the old hook: set_masks, then zero and regrow the state
        score = RandomScore(7)
        scores = grads if grow == 'gradient' else {
            n: score(n, p)
            for n, p in old.params.items()
        }
        lost, found, moved = before.drop_grow_update(old, scores, fraction)
        before.zero_optimizer_state_(opt_old, old.params, lost)
        before.init_regrown_state_(opt_old, old.params, found)
        # today's: Sparsifier.drop_and_grow, one reset of the state
        scores = grads if grow == 'gradient' else _ScoresOnAccess(
            score, new.params)
        dropped, grown, moved_new = new.drop_and_grow(
            fraction, lambda n, p: scores[n])
        new.reset_optimizer_state_(opt_new, dropped, grown)
        assert moved_new == moved
        assert list(dropped) == list(lost) and list(grown) == list(found)
        for name in lost:  # the positions are the old masks' True ones
            assert torch.equal(dropped[name],
                               lost[name].reshape(-1).nonzero().squeeze(1))
            assert torch.equal(grown[name],
                               found[name].reshape(-1).nonzero().squeeze(1))
        _same_state(old, new, opt_old, opt_new)
    for name, p in new.params.items():  # the count of every layer is kept
        n_active = int(new.keep_mask(name).sum())
        assert n_active == new.num_keep[name], name
        assert num_to_move(n_active, p.numel() - n_active, 0.3) > 0


@pytest.mark.parametrize('second_moment', ['mean', 'zero'])
def test_optimizer_state_from_masks_or_positions(second_moment):
    gen = torch.Generator().manual_seed(5)
    params = _layers(1)
    lost = {n: torch.rand(p.shape, generator=gen) < 0.1
            for n, p in params.items()}
    found = {
        n: (torch.rand(p.shape, generator=gen) < 0.1) & ~lost[n]
        for n, p in params.items()
    }
    found['d'] = torch.ones(7, 9, dtype=torch.bool)  # everything regrown
    del lost['c']  # a layer only grown

    def positions(masks):
        return {
            n: m.reshape(-1).nonzero().squeeze(1)
            for n, m in masks.items()
        }

    want = _optimizer(params, 'adam', 2)
    before.zero_optimizer_state_(want, params, lost)
    before.init_regrown_state_(want, params, found, second_moment)
    for form in (lambda m: m, positions):
        got = _optimizer(params, 'adam', 2)
        reset_optimizer_state_(got, params, form(lost), form(found),
                               second_moment)
        for p in params.values():
            for key, value in want.state[p].items():
                assert torch.equal(value, got.state[p][key]), key


def test_zero_pruned_in_slices_equals_one_pass(monkeypatch):
    gen = torch.Generator().manual_seed(6)
    word = keep_word(torch.rand(50, 99, generator=gen) < 0.7)
    values = torch.randn(50, 99, generator=gen)
    want = values.masked_fill(word == 0, 0)
    monkeypatch.setattr(masks_module, '_AND_SLICE', 128)
    for dtype in (torch.float32, torch.float16, torch.float64):
        got = zero_pruned_(values.to(dtype), word)
        assert torch.equal(got, want.to(dtype)), dtype
        assert not got.signbit()[word == 0].any()  # +0.0, never -0.0


def test_random_score_into_a_buffer_draws_the_same_values():
    score, param = RandomScore(9), torch.empty(3, 5, 7)
    out = torch.full((3, 5, 7), 2.0)
    assert torch.equal(score('w', param, out=out), score('w', param))


def test_set_keep_masks_with_and_without_zeroing():
    params = _layers(2)
    sp = MagnitudeSparsifier(params, 0.5)
    keep = torch.rand(500, 40, generator=torch.Generator().manual_seed(7))
    keep = keep < 0.5
    weight = params['b'].detach().clone()
    sp.set_keep_masks({'b': keep}, zero_weights=False)
    assert torch.equal(sp.keep_mask('b'), keep)
    assert torch.equal(params['b'], weight)
    sp.set_keep_masks({'b': keep})
    assert torch.equal(params['b'], weight * keep)
    assert not sp.is_sparse('a')


def test_tensor_digest_tells_tensors_apart():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(10000, generator=gen)
    digest = tensor_digest(x)
    assert tensor_digest(x.clone()) == digest
    assert tensor_digest(x.view(100, 100).t().contiguous().t()) != digest
    changed = [-x, x.view(100, 100), x.double()]
    for i in (0, 4095, 4096, 9999):
        y = x.clone()
        y[i] = -y[i]  # one sign bit
        changed.append(y)
    y = x.clone()
    y[[1, 3]] = -y[[1, 3]]  # two sign bits of one row
    changed.append(y)
    y = x.clone()
    y[[10, 11]] = y[[11, 10]]  # two values swapped
    changed.append(y)
    for y in changed:
        assert tensor_digest(y) != digest
    # a non-contiguous tensor hashes as its contiguous copy, a view at an
    # odd offset as its aligned copy
    t = x.view(100, 100).t()
    assert tensor_digest(t) == tensor_digest(t.contiguous())
    assert tensor_digest(x[1:]) == tensor_digest(x[1:].clone())
    assert tensor_digest(x[1:-1]) == tensor_digest(x[1:-1].clone())
    assert tensor_digest(x[1:]) != tensor_digest(x[:-1])
    for value in (torch.zeros(0), torch.tensor(True),
                  torch.arange(7, dtype=torch.int64),
                  torch.randn(9, generator=gen).half()):
        assert tensor_digest(value) == tensor_digest(value.clone())
