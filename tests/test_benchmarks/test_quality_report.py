# Copyright (c) gap_mm contributors. All rights reserved.
"""The quality report: tables, files and README blocks from cell records,
written here by hand (no training)."""
import os.path as osp
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUALITY = osp.join(ROOT, 'benchmarks', 'quality')
sys.path.insert(0, QUALITY)
import report  # noqa: E402


def record(method, sparsity, value, seed=0, study='s', **extra):
    return dict(
        study=study,
        task='det',
        method=method,
        distribution='uniform' if sparsity else None,
        sparsity=sparsity,
        budget=1,
        value=value,
        seed=seed,
        measured_sparsity=sparsity or 0.0,
        train_seconds=1.0,
        date='d',
        commit='c',
        machine='m',
        **extra)


def test_no_plot_when_no_record_makes_a_panel(tmp_path):
    # cells at one budget other than 1 (a --report-only of a budget pair)
    # have neither a sparsity panel nor a budget one: nothing is drawn
    base = dict(
        study='s', task='det', distribution=None, seed=0, budget=3,
        measured_sparsity=None, train_seconds=1.0)
    records = [
        dict(base, method='dense', sparsity=None, value=0.7),
        dict(base, method='SCS', sparsity='FLOPs 40%', value=0.66),
    ]
    messages = []
    assert report.write_outputs(records, str(tmp_path),
                                messages.append) is False
    assert not (tmp_path / 'plot.png').exists()
    assert messages == [f'no plot in {tmp_path}: no finished cell at the '
                        'default budget and no budget study']
    # nor does the README block link one
    assert not block_links_plot(tmp_path, records)
    # a plot left from earlier cells would not match the table: removed
    (tmp_path / 'plot.png').write_bytes(b'old')
    assert report.write_outputs(records, str(tmp_path),
                                messages.append) is False
    assert not (tmp_path / 'plot.png').exists()
    assert messages[-1].endswith('; removed the older plot.png')
    del messages[-1]
    assert '| SCS x3 budget |  | 0.660 n=1 (-4.0) |' in \
        (tmp_path / 'table.md').read_text()
    records.append(dict(base, method='dense', sparsity=None, budget=1,
                        value=0.6))
    assert report.write_outputs(records, str(tmp_path),
                                messages.append) is True
    assert len(messages) == 1
    assert (tmp_path / 'plot.png').stat().st_size > 1000
    assert block_links_plot(tmp_path, records)


def block_links_plot(tmp_path, records) -> bool:
    block = report.readme_block(
        'g', [dict(r, date='d', commit='c', machine='m') for r in records], 3,
        str(tmp_path), str(tmp_path / 'README.md'))
    assert block.split('\n')[-1 if 'plot.png' not in block else -3] == (
        f'*{len(records)} of 3 cells of `python benchmarks/quality/'
        'run_grid.py g`, d, commit c, m. Every cell is a JSON file in '
        '`./cells/`.*')
    return block.endswith('\n\n![g grid](plot.png)')


def test_readme_block_is_replaced_between_its_markers(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text('intro\n<!-- quality:toy:begin -->\nold\n'
                      '<!-- quality:toy:end -->\noutro\n')
    report.update_readme(str(readme), 'toy', '| new |')
    assert readme.read_text() == ('intro\n<!-- quality:toy:begin -->\n| new |'
                                  '\n<!-- quality:toy:end -->\noutro\n')
    with pytest.raises(SystemExit, match='has no <!-- quality:full:begin'):
        report.update_readme(str(readme), 'full', 'x')


def test_table_shows_the_flops_zero_filters_save():
    table = report.format_table([
        record('dense', None, 0.5, flops=dict(saved_fraction=0.0)),
        record('GReg-1', 0.5, 0.4, flops=dict(saved_fraction=0.25)),
        record('C-GaP', 0.5, 0.45),
    ])
    assert '| dense | 0.500 n=1 |  |' in table
    assert '| GReg-1 (uniform) |  | 0.400 n=1 (-10.0), FLOPs -25.0% |' in table
    assert '| C-GaP (uniform) |  | 0.450 n=1 (-5.0) |' in table


def test_a_slimmed_cell_shows_the_measured_flops_and_its_own_map():
    table = report.format_table([
        record('dense', None, 0.5),
        # the slimmed model's FLOPs win over the zero filters' lower bound
        record(
            'GReg-1',
            0.5,
            0.4,
            flops=dict(saved_fraction=0.25),
            slimmed=dict(value=0.4, flops=[200, 120], params=[10, 6])),
    ])
    assert ('| GReg-1 (uniform) |  | 0.400 n=1 (-10.0), FLOPs -40.0% '
            '(slimmed: 0.400) |') in table


def test_a_flops_target_is_a_column_and_a_summary_value_shows():
    scs = record('SCS', None, 0.5)
    scs.update(sparsity='FLOPs 30%', distribution=None)
    assert '| method | FLOPs 30% |' in report.format_table([scs])
    assert report._x('FLOPs 30%') == pytest.approx(0.7)
    # ``train_flops``, as a hook's summary put it into the record
    scs['train_flops'] = 0.6
    assert 'n=1, training FLOPs -40.0% |' in report.format_table([scs])


RECORDS = [
    record('dense', None, 0.60, seed=0),
    record('C-GaP', 0.8, 0.58, seed=0),
    record('GMP', 0.8, 0.55, seed=0),
    record('dense', None, 0.62, seed=1),
    record('C-GaP', 0.8, 0.59, seed=1),
    record('GMP', 0.8, 0.57, seed=1),
    # a table without GMP: not on GMP's page
    record('dense', None, 0.40, study='other'),
    record('C-GaP', 0.8, 0.39, study='other'),
]

PAGE = '''# GMP
intro
<!-- quality:g:method=GMP:begin -->
old
<!-- quality:g:method=GMP:end -->
middle
<!-- quality:g:method=SET:begin -->
<!-- quality:g:method=SET:end -->
<!-- quality:h:method=GMP:begin -->
another grid's
<!-- quality:h:method=GMP:end -->
outro
'''


def test_a_method_page_gets_the_method_rows_beside_dense(tmp_path):
    page = tmp_path / 'gmp.md'
    page.write_text(PAGE)
    assert report.readme_methods(str(page), 'g') == ['GMP', 'SET']
    report.update_readmes([str(page)], 'g', RECORDS, 12, str(tmp_path / 'r'))
    text = page.read_text()
    gmp = text.split('<!-- quality:g:method=GMP:begin -->\n')[1].split(
        '\n<!-- quality:g:method=GMP:end -->')[0]
    assert gmp == '\n'.join([
        '### s: det (bbox mAP; mean [min, max] over seeds, n = seeds, '
        'Δ = points vs dense at the same budget)', '',
        '| method | dense | 80% |', '|---|---|---|',
        '| dense | 0.610 [0.600, 0.620] n=2 |  |',
        '| GMP (uniform) |  | 0.560 [0.550, 0.570] n=2 (-5.0) |', '',
        '*4 of 12 cells of `python benchmarks/quality/run_grid.py g`, d, '
        'commit c, m. Every cell is a JSON file in `r/cells/`.*'
    ])
    # the same rows as the grid's own table shows them
    assert report.format_table(RECORDS).count(
        '| GMP (uniform) |  | 0.560 [0.550, 0.570] n=2 (-5.0) |') == 1
    assert ('<!-- quality:g:method=SET:begin -->\n*No finished cell of SET '
            'in the g grid yet.*\n<!-- quality:g:method=SET:end -->') in text
    # the rest of the page, another grid's block included, is untouched
    assert text.startswith('# GMP\nintro\n<!-- quality:g:method=GMP:begin')
    assert '\nmiddle\n' in text and text.endswith(
        '<!-- quality:h:method=GMP:begin -->\nanother grid\'s\n'
        '<!-- quality:h:method=GMP:end -->\noutro\n')
    # a page with neither the grid's block nor a method block of it
    with pytest.raises(SystemExit, match='has no <!-- quality:x:begin'):
        report.update_readmes([str(page)], 'x', RECORDS, 12, str(tmp_path))


def test_report_only_fills_a_method_page_from_the_committed_cells(tmp_path):
    """``run_grid.py quick --report-only --update-readme PAGE`` on a copy
    of the committed quick grid: the page's C-GaP block gets C-GaP's rows
    and dense's, per task; the grid's table has static's rows too."""
    shutil.copytree(
        osp.join(QUALITY, 'results', 'quick', 'cells'),
        tmp_path / 'results' / 'quick' / 'cells')
    page = tmp_path / 'cgap.md'
    page.write_text('<!-- quality:quick:method=C-GaP:begin -->\n'
                    '<!-- quality:quick:method=C-GaP:end -->\n')
    subprocess.run([
        sys.executable,
        osp.join(QUALITY, 'run_grid.py'), 'quick', '--report-only',
        '--results',
        str(tmp_path / 'results'), '--update-readme',
        str(page)
    ], check=True, capture_output=True)
    table = (tmp_path / 'results' / 'quick' / 'table.md').read_text()
    text = page.read_text()
    for task in ('det', 'partseg'):
        assert f'### main: {task} ' in text
    rows = [line for line in text.split('\n') if line.startswith('| ')]
    assert [r.split(' |')[0] for r in rows] == [
        '| method', '| dense', '| C-GaP (erk)', '| method', '| dense',
        '| C-GaP (erk)'
    ]
    assert all(row in table for row in rows)
    assert '| static (erk) |' in table
    assert '*4 of 6 cells of `python benchmarks/quality/run_grid.py quick`' \
        in text


def test_the_report_names_no_method():
    """The reporter takes rows from the records' labels: no method's name
    (nor its id key) is spelt in it, only dense, the reference."""
    import grids
    with open(osp.join(QUALITY, 'report.py')) as f:
        source = f.read()
    with open(osp.join(QUALITY, 'runner.py')) as f:
        runner_source = f.read()
    for label, key in grids.METHOD_KEYS.items():
        if label.startswith('dense'):
            continue
        for text in (source, runner_source):
            assert label not in text and f"'{key}'" not in text


def test_headline_block_is_the_frontier_table_and_draws_its_plot(tmp_path):
    records = [
        dict(record('dense', None, 0.57, seed=s), distribution=None)
        for s in (0, 1)
    ] + [
        dict(record('C-GaP', sp, v, seed=s), distribution='erk')
        for sp, v in ((0.9, 0.565), (0.95, 0.50)) for s in (0, 1)
    ]
    readme = tmp_path / 'README.md'
    readme.write_text('top\n<!-- quality:g:headline:begin -->\nold\n'
                      '<!-- quality:g:headline:end -->\nbottom\n')
    report.update_readmes([str(readme)], 'g', records, 8, str(tmp_path))
    text = readme.read_text()
    assert 'old' not in text and text.startswith('top\n') and \
        text.endswith('bottom\n')
    assert ('| C-GaP | 0.565 [0.565, 0.565] n=2 (-0.5) | 0.500 [0.500, '
            '0.500] n=2 (-7.0) | **90%** (0.565, seeds 0.565-0.565) |') in text
    assert '*6 of 8 cells of `python benchmarks/quality/run_grid.py g`' in text
    assert (tmp_path / 'frontier.png').is_file()
