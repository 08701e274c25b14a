# Copyright (c) gap_mm contributors. All rights reserved.
"""The frontier report: the highest sparsity within a point of dense, the
cells it counts, its table and its plot."""
import os.path as osp
import sys

import pytest

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, osp.join(ROOT, 'benchmarks', 'quality'))
import frontier  # noqa: E402


def _rec(method, sparsity, seed, value, task='det', dist='erk', **extra):
    rec = dict(task=task, method=method, sparsity=sparsity, seed=seed,
               value=value, budget=1, variant='',
               distribution=dist if sparsity is not None else None)
    rec.update(extra)
    return rec


@pytest.fixture
def records():
    return [
        _rec('dense', None, 0, 0.570), _rec('dense', None, 1, 0.580),
        # mean 0.570 at 90% (within a point of 0.575), 0.560 at 95% (not)
        _rec('C-GaP', 0.9, 0, 0.560), _rec('C-GaP', 0.9, 1, 0.580),
        _rec('C-GaP', 0.95, 0, 0.550), _rec('C-GaP', 0.95, 1, 0.570),
        # within at 95% but not at 90%: the highest one counts
        _rec('SET', 0.9, 0, 0.500), _rec('SET', 0.95, 0, 0.566),
        _rec('GMP', 0.9, 0, 0.400),
        # cells the frontier must not count
        _rec('C-GaP', 0.95, 2, 0.900, dist='uniform'),
        _rec('C-GaP', 0.95, 3, 0.900, variant='T50 R8'),
        _rec('C-GaP', 0.95, 4, 0.900, budget=2),
        _rec('C-GaP', 0.95, 5, 0.900, task='partseg'),
        _rec('C-GaP', '2:4', 0, 0.900, dist=None),
    ]


def test_summarize_counts_only_default_budget_erk_cells(records):
    dense, methods = frontier.summarize(records, 'det')
    assert dense['n'] == 2 and dense['mean'] == pytest.approx(0.575)
    assert methods['C-GaP'][0.95]['n'] == 2
    assert methods['C-GaP'][0.95]['seeds'] == [0, 1]
    assert methods['C-GaP'][0.95]['mean'] == pytest.approx(0.560)
    assert set(methods['C-GaP']) == {0.9, 0.95}


def test_within_dense_is_the_highest_sparsity_within_the_tolerance(records):
    dense, methods = frontier.summarize(records, 'det')
    assert frontier.within_dense(dense, methods['C-GaP']) == 0.9
    assert frontier.within_dense(dense, methods['SET']) == 0.95
    assert frontier.within_dense(dense, methods['GMP']) is None
    assert frontier.within_dense(dense, methods['C-GaP'],
                                 tolerance=0.02) == 0.95


def test_headline_table(records):
    table = frontier.headline(records, 'det').splitlines()
    assert table[0] == ('| method | 90% | 95% | within 1 point of dense '
                        'up to |')
    assert table[2] == '| dense | 0.575 [0.570, 0.580] n=2 | | |'
    assert table[3] == ('| C-GaP | 0.570 [0.560, 0.580] n=2 (-0.5) | '
                        '0.560 [0.550, 0.570] n=2 (-1.5) | **90%** '
                        '(0.570, seeds 0.560-0.580) |')
    assert table[4].startswith('| GMP | 0.400 n=1 (-17.5) |  | below 90% |')
    assert table[5].endswith('| **95%** (0.566, seeds 0.566-0.566) |')


def test_plot_uses_one_colour_per_method(records, tmp_path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    drawn = {}
    real_errorbar = matplotlib.axes.Axes.errorbar

    def spy(ax, *args, **kwargs):
        drawn.setdefault(kwargs['label'], set()).add(kwargs['color'])
        return real_errorbar(ax, *args, **kwargs)

    matplotlib.axes.Axes.errorbar = spy
    try:
        path = str(tmp_path / 'frontier.png')
        assert frontier.plot(records, path)
    finally:
        matplotlib.axes.Axes.errorbar = real_errorbar
        plt.close('all')
    assert osp.getsize(path) > 0
    assert drawn == {
        'C-GaP': {frontier.METHOD_COLOURS['C-GaP']},
        'SET': {frontier.METHOD_COLOURS['SET']},
        'GMP': {frontier.METHOD_COLOURS['GMP']},
    }
    assert len(set(frontier.METHOD_COLOURS.values())) == len(
        frontier.METHOD_COLOURS)


def test_plot_without_cells_writes_nothing(tmp_path):
    path = tmp_path / 'frontier.png'
    assert not frontier.plot([], str(path))
    assert not path.exists()
