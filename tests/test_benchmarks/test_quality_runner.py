# Copyright (c) gap_mm contributors. All rights reserved.
"""The quality runner on a 2-cell toy grid: it trains and evaluates
through the tools, skips finished cells and writes the table, never the
figures of a real grid."""
import dataclasses
import json
import os
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY_DIR = osp.join(ROOT, 'tests', 'test_tools', 'toy_cfg')
sys.path.insert(0, osp.join(ROOT, 'benchmarks', 'quality'))
import report  # noqa: E402
import runner  # noqa: E402
from cell import Cell, format_option  # noqa: E402

TOY_GAP = '''
_base_ = {base!r}
custom_imports = dict(imports=['gap_toy_launcher_module', 'gap_mm'],
                      allow_failed_imports=False)
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [dict(type='GaPHook', partitions=2,
                     schedule=dict(type='cyclic', period=1, num_rounds=1))]
'''


@pytest.fixture
def toy_grid(tmp_path, monkeypatch):
    monkeypatch.setenv('PYTHONPATH', TOY_DIR)
    gap_cfg = tmp_path / 'toy_gap.py'
    gap_cfg.write_text(TOY_GAP.format(base=osp.join(TOY_DIR, 'toy_config.py')))
    cells = [
        Cell(
            id='toy-dense-s0',
            task='toy',
            method='dense',
            config=osp.join(TOY_DIR, 'toy_config.py'),
            report_config=str(gap_cfg)),
        Cell(
            id='toy-cgap-0.5-uniform-s0',
            task='toy',
            method='C-GaP',
            config=str(gap_cfg),
            options={'gap_sparsity': 0.5},
            sparsity=0.5,
            distribution='uniform'),
    ]
    return cells, str(tmp_path / 'out'), str(tmp_path / 'work')


def logged_test_value(work: str, cell_id: str) -> float:
    """The MSE that tools/test.py logged for a cell (its JSON log)."""
    found = []
    for root, _, files in os.walk(osp.join(work, cell_id, 'test')):
        for name in files:
            if name.endswith('.json') and name != 'scalars.json':
                with open(osp.join(root, name)) as f:
                    found += [
                        json.loads(line)['toy/mse'] for line in f
                        if 'toy/mse' in line
                    ]
    assert len(found) == 1, found
    return found[0]


def test_two_cell_grid_runs_skips_and_tabulates(toy_grid):
    cells, out, work = toy_grid
    messages = []
    records = runner.run_grid(
        cells, out, work, grid='toy', log=messages.append)
    assert [r['id']
            for r in records] == ['toy-dense-s0', 'toy-cgap-0.5-uniform-s0']
    dense, gap = records
    assert gap['measured_sparsity'] == pytest.approx(0.5, abs=0.01)
    assert dense['measured_sparsity'] == 0.0
    for rec in records:
        # the record holds what tools/test.py measured on the checkpoint
        assert rec['metric'] == 'toy/mse'
        assert rec['value'] == logged_test_value(work, rec['id'])
        assert rec['commands'][0].split()[1] == 'tools/train.py'
        assert 'randomness.seed=0' in rec['commands'][0]
    assert '2 cells: 0 done, 2 to run' in messages[0]
    assert any('about' in m and 'left' in m for m in messages)

    # outputs: table, JSON, CSV and plot
    table = open(osp.join(out, 'table.md')).read()
    assert '| dense | ' in table and '| C-GaP (uniform) |' in table
    assert f'{dense["value"]:.3f} n=1' in table
    summary = json.load(open(osp.join(out, 'results.json')))
    assert len(summary['cells']) == 2 and 'losses' not in summary['cells'][0]
    assert open(osp.join(out, 'results.csv')).read().count('\n') == 3
    assert os.path.getsize(osp.join(out, 'plot.png')) > 1000

    # a second run skips the finished cells: no tool runs again
    stamp = {
        c.id: os.path.getmtime(osp.join(out, 'cells', f'{c.id}.json'))
        for c in cells
    }
    logs = {
        c.id: open(osp.join(work, c.id, 'harness.log')).read()
        for c in cells
    }
    messages.clear()
    again = runner.run_grid(cells, out, work, grid='toy', log=messages.append)
    assert '2 cells: 2 done, 0 to run' in messages[0]
    assert [r['value'] for r in again] == [r['value'] for r in records]
    for c in cells:
        assert os.path.getmtime(osp.join(out, 'cells',
                                         f'{c.id}.json')) == stamp[c.id]
        assert open(osp.join(work, c.id, 'harness.log')).read() == logs[c.id]

    # running a subset (run_grid.py --only) reports the whole grid
    subset = runner.run_grid(
        cells[:1], out, work, grid='toy', log=lambda m: 0, report_cells=cells)
    assert [r['id'] for r in subset] == [r['id'] for r in records]
    assert '| C-GaP (uniform) |' in open(osp.join(out, 'table.md')).read()


def test_a_cell_another_grid_finished_is_reused(toy_grid):
    """The same config and options finished by a sibling grid are copied,
    marked with their origin; a different option trains anew."""
    cells, out, work = toy_grid
    elsewhere = dataclasses.replace(cells[0], study='first')
    first = runner.run_grid([elsewhere],
                            out,
                            work,
                            grid='toy',
                            log=lambda m: 0)[0]
    assert first['study'] == 'first'
    sibling = osp.join(osp.dirname(out), 'other')
    log_path = osp.join(work, 'other', cells[0].id, 'harness.log')
    again = runner.run_grid(
        cells[:1],
        sibling,
        osp.join(work, 'other'),
        grid='other',
        log=lambda m: 0)[0]
    assert again['value'] == first['value']
    assert (again['grid'], again['study']) == ('other', 'main')
    assert again['reused_from'] == osp.join('out', 'cells',
                                            f'{cells[0].id}.json')
    assert not osp.exists(log_path)  # nothing was trained
    changed = dataclasses.replace(cells[0], options={'train_cfg.max_iters': 2})
    fresh = runner.run_grid([changed],
                            osp.join(osp.dirname(out), 'third'),
                            osp.join(work, 'third'),
                            grid='third',
                            log=lambda m: 0)[0]
    assert 'reused_from' not in fresh


def test_multi_process_cell_trains_through_dist_train(toy_grid):
    """A cell with procs=2 trains with tools/dist_train.sh on 2 gloo
    processes, evaluates on one, and is its own row of the table."""
    cells, out, work = toy_grid
    cell = dataclasses.replace(cells[0], id='toy-dense-p2-s0', procs=2)
    record, = runner.run_grid([cell], out, work, grid='toy', log=lambda m: 0)
    train, test = record['commands']
    assert train.startswith('bash tools/dist_train.sh ') and ' 2 ' in train
    assert test.split()[1] == 'tools/test.py'
    assert record['value'] == logged_test_value(work, cell.id)
    log = open(osp.join(work, cell.id, 'harness.log')).read()
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert '| dense on 2 processes |' in report.format_table([record])


def test_failing_cell_names_the_tool_and_its_log(toy_grid, tmp_path):
    cells, out, work = toy_grid
    broken = Cell(
        id='toy-broken-s0',
        task='toy',
        method='broken',
        config=str(tmp_path / 'missing.py'))
    with pytest.raises(runner.CellFailed, match='tools/train.py'):
        runner.run_grid([broken], out, work, grid='toy', log=lambda m: 0)
    # keep_going records the failure and still writes the outputs
    with pytest.raises(runner.CellFailed, match=r'1 cells failed'):
        runner.run_grid([broken, cells[0]],
                        out,
                        work,
                        grid='toy',
                        log=lambda m: 0,
                        keep_going=True)
    assert os.path.isfile(osp.join(out, 'table.md'))


def test_cell_whose_start_checkpoint_is_missing_fails_before_training(
        toy_grid):
    cells, out, work = toy_grid
    start = dataclasses.replace(
        cells[0],
        options={'load_from': 'work_dirs/quality/toy/gone/iter_1.pth'})
    with pytest.raises(
            runner.CellFailed,
            match=r'toy-dense-s0 starts from load_from=work_dirs/quality/'
            r'toy/gone/iter_1\.pth, which is not on disk'):
        runner.run_grid([start], out, work, grid='toy', log=lambda m: 0)
    assert not osp.exists(osp.join(work, start.id))  # nothing was trained


def test_duplicate_cells_and_bad_options_are_refused(toy_grid):
    cells, out, work = toy_grid
    with pytest.raises(ValueError, match='duplicate cells'):
        runner.run_grid([cells[0], cells[0]], out, work, log=lambda m: 0)
    with pytest.raises(ValueError, match='cannot be passed'):
        format_option('a', 'two words')
    assert format_option('a', [1, 2]) == 'a=[1,2]'
    assert format_option('b', 0.5) == 'b=0.5'
