# Copyright (c) gap_mm contributors. All rights reserved.
import pytest
import torch

from gap_mm.sparsity import kth_largest, nm_mask, num_kept, topk_mask, \
    topk_masks
from gap_mm.sparsity import topk as topk_module


def _reference_masks(scores, k):
    """Sort-based reference: stable order by (-score, position)."""
    flat = torch.cat([s.reshape(-1) for s in scores])
    order = torch.sort(-flat, stable=True).indices[:k]
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[order] = True
    return list(keep.split([s.numel() for s in scores]))


@pytest.mark.parametrize('n, s, expected', [(10, 0.8, 2), (7, 0.5, 3),
                                            (5, 0.5, 3), (1000, 0.9, 100),
                                            (3, 0.0, 3), (9, 0.99, 0)])
def test_num_kept(n, s, expected):
    # n - round(s * n), Python's round (half to even): 7 * 0.5 = 3.5 -> 4.
    assert num_kept(n, s) == expected


@pytest.mark.parametrize('k', [0, 1, 17, 50, 99, 100])
def test_topk_exact_count_and_choice(k):
    score = torch.rand(10, 10, generator=torch.Generator().manual_seed(k))
    mask = topk_mask(score, k)
    assert mask.dtype == torch.bool and mask.shape == score.shape
    assert int(mask.sum()) == k
    assert torch.equal(mask.reshape(-1), _reference_masks([score], k)[0])


def test_ties_keep_lower_index_first():
    score = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.5, 0.0, 2.0])
    assert topk_mask(
        score, 4).tolist() == [True, False, True, True, False, False, True]
    # An all-zero tensor (a freshly regrown layer) still keeps exactly k.
    zeros = torch.zeros(3, 5)
    mask = topk_mask(zeros, 6)
    assert int(mask.sum()) == 6
    assert mask.reshape(-1).tolist() == [True] * 6 + [False] * 9


def test_global_ties_break_by_list_order():
    a, b = torch.ones(4), torch.ones(4)
    ma, mb = topk_masks([a, b], 6)
    assert ma.all() and mb.tolist() == [True, True, False, False]


@pytest.mark.parametrize('dups', [False, True])
def test_large_tensors_take_bracket_path_and_stay_exact(dups, monkeypatch):
    # Force the sampled-bracket path on tensors of modest size.
    monkeypatch.setattr(topk_module, '_BRACKET_MIN_NUMEL', 1000)
    gen = torch.Generator().manual_seed(3)
    scores = [
        torch.rand(300, 70, generator=gen),
        torch.rand(5000, generator=gen)
    ]
    if dups:  # heavy ties: quantised magnitudes and a block of zeros
        scores = [torch.round(s * 20) / 20 for s in scores]
        scores[1][:2000] = 0
    total = sum(s.numel() for s in scores)
    for k in (1, total // 5, total // 2, total - 1):
        got = topk_masks(scores, k)
        want = _reference_masks(scores, k)
        assert sum(int(m.sum()) for m in got) == k
        for g, w in zip(got, want):
            assert torch.equal(g.reshape(-1), w)
        flat = torch.cat([s.reshape(-1) for s in scores])
        assert kth_largest([s.reshape(-1) for s in scores], k) == \
            torch.sort(flat, descending=True).values[k - 1]


def test_topk_rejects_bad_k():
    with pytest.raises(ValueError, match='k must be in'):
        topk_mask(torch.rand(4), 5)


def test_nm_mask_two_four_linear():
    w = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.0, 0.0, 0.0, 0.0],
                      [1.0, 1.0, 1.0, 1.0, -5.0, 6.0, 0.1, 0.2]])
    mask = nm_mask(w.abs(), 2, 4)
    assert mask.tolist() == [
        [True, False, True, False, True, True, False, False],
        [True, True, False, False, True, True, False, False],
    ]


def test_nm_mask_conv_runs_along_input_channels():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 8, 3, 3, generator=gen)
    mask = nm_mask(w.abs(), 2, 4)
    assert int(mask.sum()) == w.numel() // 2
    # Every run of 4 input channels at a fixed (out, kh, kw) keeps 2.
    runs = mask.permute(0, 2, 3, 1).reshape(-1, 4)
    assert (runs.sum(1) == 2).all()
    # and they are the two largest of the run
    mags = w.abs().permute(0, 2, 3, 1).reshape(-1, 4)
    kept_min = torch.where(runs, mags, torch.inf).min(1).values
    dropped_max = torch.where(runs, -torch.inf, mags).max(1).values
    assert (kept_min >= dropped_max).all()


def test_nm_mask_rejects_indivisible_input():
    with pytest.raises(ValueError, match='divide by 4'):
        nm_mask(torch.rand(4, 6), 2, 4)


@pytest.mark.parametrize('k', [0, 3, 12])
def test_pruned_masks_are_the_exact_complement(k):
    scores = [torch.tensor([[1.0, 1.0], [0.5, 0.0]]), torch.ones(8)]
    keep = topk_masks(scores, k)
    pruned = topk_masks(scores, k, pruned=True)
    for a, b in zip(keep, pruned):
        assert torch.equal(a, ~b)


def test_bracket_collapsed_on_a_frequent_value(monkeypatch):
    # 80% exact zeros (an already sparse layer): the sampled bracket
    # collapses onto 0 and the ties are found by the early-exit scan.
    monkeypatch.setattr(topk_module, '_BRACKET_MIN_NUMEL', 1000)
    gen = torch.Generator().manual_seed(5)
    scores = [torch.rand(4000, generator=gen) for _ in range(3)]
    for s in scores:
        s[torch.rand(4000, generator=gen) < 0.8] = 0
    total = 12000
    for k in (100, int((scores[0] > 0).sum()), total // 2):
        got = topk_masks(scores, k)
        want = _reference_masks(scores, k)
        for g, w in zip(got, want):
            assert torch.equal(g.reshape(-1), w)
