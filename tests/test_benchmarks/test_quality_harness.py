# Copyright (c) gap_mm contributors. All rights reserved.
"""The quality harness on a 2-cell toy grid: it trains and evaluates
through the tools, skips finished cells and writes the table, never the
figures of a real grid."""
import json
import os
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY_DIR = osp.join(ROOT, 'tests', 'test_tools', 'toy_cfg')
sys.path.insert(0, osp.join(ROOT, 'benchmarks', 'quality'))
import grids  # noqa: E402
import harness  # noqa: E402
import run_grid  # noqa: E402

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
        harness.Cell(
            task='toy',
            method='dense',
            config=osp.join(TOY_DIR, 'toy_config.py'),
            report_config=str(gap_cfg)),
        harness.Cell(
            task='toy',
            method='C-GaP',
            config=str(gap_cfg),
            options={'gap_sparsity': 0.5},
            sparsity=0.5,
            distribution='uniform'),
    ]
    return cells, str(tmp_path / 'out'), str(tmp_path / 'work')


def test_two_cell_grid_runs_skips_and_tabulates(toy_grid):
    cells, out, work = toy_grid
    messages = []
    records = harness.run_grid(
        cells, out, work, grid='toy', log=messages.append)
    assert [r['id']
            for r in records] == ['toy-dense-s0', 'toy-cgap-0.5-uniform-s0']
    dense, gap = records
    assert gap['measured_sparsity'] == pytest.approx(0.5, abs=0.01)
    assert dense['measured_sparsity'] == 0.0
    for rec in records:
        assert rec['metric'] == 'toy/mse' and rec['value'] >= 0
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
    again = harness.run_grid(cells, out, work, grid='toy', log=messages.append)
    assert '2 cells: 2 done, 0 to run' in messages[0]
    assert [r['value'] for r in again] == [r['value'] for r in records]
    for c in cells:
        assert os.path.getmtime(osp.join(out, 'cells',
                                         f'{c.id}.json')) == stamp[c.id]
        assert open(osp.join(work, c.id, 'harness.log')).read() == logs[c.id]

    # running a subset (run_grid.py --only) reports the whole grid
    subset = harness.run_grid(
        cells[:1], out, work, grid='toy', log=lambda m: 0, report_cells=cells)
    assert [r['id'] for r in subset] == [r['id'] for r in records]
    assert '| C-GaP (uniform) |' in open(osp.join(out, 'table.md')).read()


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
    assert harness.write_outputs(records, str(tmp_path),
                                 messages.append) is False
    assert not (tmp_path / 'plot.png').exists()
    assert messages == [f'no plot in {tmp_path}: no finished cell at the '
                        'default budget and no budget study']
    # nor does the README block link one
    assert not block_links_plot(tmp_path, records)
    # a plot left from earlier cells would not match the table: removed
    (tmp_path / 'plot.png').write_bytes(b'old')
    assert harness.write_outputs(records, str(tmp_path),
                                 messages.append) is False
    assert not (tmp_path / 'plot.png').exists()
    assert messages[-1].endswith('; removed the older plot.png')
    del messages[-1]
    assert '| SCS x3 budget |  | 0.660 n=1 (-4.0) |' in \
        (tmp_path / 'table.md').read_text()
    records.append(dict(base, method='dense', sparsity=None, budget=1,
                        value=0.6))
    assert harness.write_outputs(records, str(tmp_path),
                                 messages.append) is True
    assert len(messages) == 1
    assert (tmp_path / 'plot.png').stat().st_size > 1000
    assert block_links_plot(tmp_path, records)


def block_links_plot(tmp_path, records) -> bool:
    block = run_grid.readme_block(
        'g', [dict(r, date='d', commit='c', machine='m') for r in records], 3,
        str(tmp_path), str(tmp_path / 'README.md'))
    assert block.split('\n')[-1 if 'plot.png' not in block else -3] == (
        f'*{len(records)} of 3 cells of `python benchmarks/quality/'
        'run_grid.py g`, d, commit c, m. Every cell is a JSON file in '
        '`./cells/`.*')
    return block.endswith('\n\n![g grid](plot.png)')


def test_a_cell_another_grid_finished_is_reused(toy_grid):
    """The same config and options finished by a sibling grid are copied,
    marked with their origin; a different option trains anew."""
    cells, out, work = toy_grid
    elsewhere = harness.Cell(**dict(vars(cells[0]), study='first'))
    first = harness.run_grid([elsewhere],
                             out,
                             work,
                             grid='toy',
                             log=lambda m: 0)[0]
    assert first['study'] == 'first'
    sibling = osp.join(osp.dirname(out), 'other')
    log_path = osp.join(work, 'other', cells[0].id, 'harness.log')
    again = harness.run_grid(
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
    changed = harness.Cell(
        **dict(vars(cells[0]), options={'train_cfg.max_iters': 2}))
    fresh = harness.run_grid([changed],
                             osp.join(osp.dirname(out), 'third'),
                             osp.join(work, 'third'),
                             grid='third',
                             log=lambda m: 0)[0]
    assert 'reused_from' not in fresh


def test_multi_process_cell_trains_through_dist_train(toy_grid):
    """A cell with procs=2 trains with tools/dist_train.sh on 2 gloo
    processes, evaluates on one, and is its own row of the table."""
    cells, out, work = toy_grid
    cell = harness.Cell(
        task='toy',
        method='dense',
        config=cells[0].config,
        report_config=cells[0].report_config,
        procs=2)
    assert cell.id == 'toy-dense-p2-s0'
    record, = harness.run_grid([cell], out, work, grid='toy', log=lambda m: 0)
    train, test = record['commands']
    assert train.startswith('bash tools/dist_train.sh ') and ' 2 ' in train
    assert test.split()[1] == 'tools/test.py'
    assert record['procs'] == 2 and record['value'] >= 0
    log = open(osp.join(work, cell.id, 'harness.log')).read()
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert '| dense on 2 processes |' in harness.format_table([record])


def test_failing_cell_names_the_tool_and_its_log(toy_grid, tmp_path):
    cells, out, work = toy_grid
    broken = harness.Cell(
        task='toy', method='broken', config=str(tmp_path / 'missing.py'))
    with pytest.raises(harness.CellFailed, match='tools/train.py'):
        harness.run_grid([broken], out, work, grid='toy', log=lambda m: 0)
    # keep_going records the failure and still writes the outputs
    with pytest.raises(harness.CellFailed, match=r'1 cells failed'):
        harness.run_grid([broken, cells[0]],
                         out,
                         work,
                         grid='toy',
                         log=lambda m: 0,
                         keep_going=True)
    assert os.path.isfile(osp.join(out, 'table.md'))


def test_cell_whose_start_checkpoint_is_missing_fails_before_training(
        toy_grid):
    cells, out, work = toy_grid
    start = harness.Cell(
        task='toy',
        method='dense',
        config=cells[0].config,
        options={'load_from': 'work_dirs/quality/toy/gone/iter_1.pth'})
    with pytest.raises(
            harness.CellFailed,
            match=r'toy-dense-s0 starts from load_from=work_dirs/quality/'
            r'toy/gone/iter_1\.pth, which is not on disk'):
        harness.run_grid([start], out, work, grid='toy', log=lambda m: 0)
    assert not osp.exists(osp.join(work, start.id))  # nothing was trained


def test_duplicate_cells_and_bad_options_are_refused(toy_grid):
    cells, out, work = toy_grid
    with pytest.raises(ValueError, match='duplicate cells'):
        harness.run_grid([cells[0], cells[0]], out, work, log=lambda m: 0)
    with pytest.raises(ValueError, match='cannot be passed'):
        harness.format_option('a', 'two words')
    assert harness.format_option('a', [1, 2]) == 'a=[1,2]'
    assert harness.format_option('b', 0.5) == 'b=0.5'


def test_readme_block_is_replaced_between_its_markers(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text('intro\n<!-- quality:toy:begin -->\nold\n'
                      '<!-- quality:toy:end -->\noutro\n')
    run_grid.update_readme(str(readme), 'toy', '| new |')
    assert readme.read_text() == ('intro\n<!-- quality:toy:begin -->\n| new |'
                                  '\n<!-- quality:toy:end -->\noutro\n')
    with pytest.raises(SystemExit, match='has no <!-- quality:full:begin'):
        run_grid.update_readme(str(readme), 'full', 'x')


def test_table_shows_the_flops_zero_filters_save():

    def record(method, sparsity, value, flops=None):
        return dict(
            study='s',
            task='det',
            method=method,
            distribution='uniform' if sparsity else None,
            sparsity=sparsity,
            budget=1,
            value=value,
            seed=0,
            measured_sparsity=sparsity or 0.0,
            train_seconds=1.0,
            flops=flops)

    table = harness.format_table([
        record('dense', None, 0.5, dict(saved_fraction=0.0)),
        record('GReg-1', 0.5, 0.4, dict(saved_fraction=0.25)),
        record('C-GaP', 0.5, 0.45),
    ])
    assert '| dense | 0.500 n=1 |  |' in table
    assert '| GReg-1 (uniform) |  | 0.400 n=1 (-10.0), FLOPs -25.0% |' in table
    assert '| C-GaP (uniform) |  | 0.450 n=1 (-5.0) |' in table


def test_a_slimmed_cell_shows_the_measured_flops_and_its_own_map():
    base = dict(
        study='s',
        task='det',
        distribution='uniform',
        sparsity=0.5,
        budget=1,
        seed=0,
        measured_sparsity=0.5,
        train_seconds=1.0)
    table = harness.format_table([
        dict(
            base, method='dense', sparsity=None, distribution=None, value=0.5),
        # the slimmed model's FLOPs win over the zero filters' lower bound
        dict(
            base,
            method='GReg-1',
            value=0.4,
            flops=dict(saved_fraction=0.25),
            slimmed=dict(value=0.4, flops=[200, 120], params=[10, 6])),
    ])
    assert ('| GReg-1 (uniform) |  | 0.400 n=1 (-10.0), FLOPs -40.0% '
            '(slimmed: 0.400) |') in table


def test_scs_cells_are_columns_of_their_flops_target():
    cells = grids.scs()
    scs = [c for c in cells if c.method == 'SCS' and c.task == 'det']
    pn2 = [c.id for c in cells if c.method == 'SCS' and c.task == 'partseg']
    assert pn2 == [
        f'partseg-scs-flops{t}-s{s}' for s in (0, 1) for t in (50, 30)
    ]
    assert [c.id for c in scs] == [
        'det-scs-flops50-s0', 'det-scs-flops30-s0', 'det-scs-flops50-s1',
        'det-scs-flops30-s1', 'det-scs-flops50-adamwgateslambda1-s0',
        'det-scs-flops50-adamwgateslambda1warmup25-s0',
        'det-scs-flops50-adamwgateslambda0.01warmup25-s0',
        'det-scs-flops50-nowarmup-s0',
        'det-scs-flops50-growingfroma25seedwidth-s0',
        'det-scs-flops50-growingfroma25seedwidthsignedlambda-s0',
        'det-scs-flops30-b2-fromdense2000it-s0',
        'det-scs-flops50-b2-fromdense2000it-s0',
        'det-scs-flops40-b2-fromdense2000it-s0',
        'det-scs-flops30-b2-fromdense2000it-s1',
        'det-scs-flops40-b2-fromdense2000it-s1',
        'det-scs-flops50-b2-fromdense2000it-s1',
        'det-scs-flops40-b3-fromdense2000it-s0',
        'det-scs-flops40-b3-fromdense2000itsignedlambda-s0',
        'det-scs-flops40-b2-fromdense2000itfreeze30-s0',
        'det-scs-flops40-b2-fromdense2000itfreeze40lambdafrom0.2-s0',
        'det-scs-flops40-b2-fromdense2000itfreeze40lambdafrom0.05-s0',
        'det-scs-flops40-b2-fromdense2000itfreeze40lambdafrom0.1-s0',
        'det-scs-flops40-b2-fromdense2000itfreeze40lambdafrom0.1-s1',
        'det-scs-flops40-b2-fromdense3000itlambdafrom0.05-s0',
        'det-scs-flops40-b2-fromdense2000it-s2',
        'det-scs-flops40-b2-fromdense2000itfreeze30lambdafrom0.05landed-s0',
        'det-scs-flops40-b2-fromdense2000itfreeze30lambdafrom0.05landed-s1',
        'det-scs-flops40-b2-fromdense2000itfreeze30lambdafrom0.05landed-s2',
        'det-scs-flops35-b2-fromdense2000itfreeze30lambdafrom0.05landed-s0',
        'det-scs-flops35-b2-fromdense2000itfreeze30lambdafrom0.05landed-s1'
    ] + [
        'det-scs-flops40-b2-fromdense2000itfreeze30lambdafrom0.05landed'
        f'regressiontowerungated-s{seed}' for seed in (0, 1, 2)
    ] + [
        f'det-scs-flops{target}-b{budget}-fromdense2000itfreeze30lambda'
        f'from0.05landed-s{seed}'
        for target, budget in ((60, 2), (50, 2), (70, 2), (40, 3))
        for seed in (0, 1, 2)
    ] + [f'det-scs-flops40-b3-fromdense2000it-s{seed}' for seed in (1, 2)]
    by_id = {c.id: c for c in cells}
    # the first settings: AdamW on the logits, lambda 1, no warm-up
    first = scs[4].options
    assert first['custom_hooks.0.gate_lr'] is None
    assert first['custom_hooks.0.begin'] == 0
    assert first['model.lambda_init'] == 1.0
    assert harness.format_option(
        'optim_wrapper.paramwise_cfg.custom_keys.gates.lr_mult',
        first['optim_wrapper.paramwise_cfg.custom_keys.gates.lr_mult']) == \
        'optim_wrapper.paramwise_cfg.custom_keys.gates.lr_mult=10.0'
    assert harness.format_option('custom_hooks.0.gate_lr',
                                 None) == 'custom_hooks.0.gate_lr=None'
    assert scs[5].options['custom_hooks.0.begin'] == 0.25
    assert scs[6].options['model.lambda_init'] == 0.01
    assert scs[7].options['custom_hooks.0.begin'] == 0
    # growing mode: first as built (no silencing), then signed and silenced
    assert scs[8].options['model.seed_width'] == 0.25
    assert scs[8].options['custom_hooks.0.silence_seed'] is False
    signed = scs[9].options
    assert signed['model.seed_width'] == 0.25
    assert signed['custom_hooks.0.lambda_controller'] == 'signed'
    assert signed['model.lambda_init'] == 0.0
    assert 'custom_hooks.0.silence_seed' not in signed  # default True
    assert all(c.slim and not c.report for c in scs)
    # pruning a trained model: the dense twin's own cell trains first and
    # SCS starts from its checkpoint, beside dense at twice the budget
    ids = [c.id for c in cells]
    for seed in (0, 1):
        start = ids.index(f'det-dense-scsstart-s{seed}')
        assert start < ids.index(
            f'det-scs-flops30-b2-fromdense2000it-s{seed}')
        assert f'det-dense-b2-s{seed}' in ids
    assert len(ids) == len(set(ids))
    for cell in scs[10:]:
        if 'fromdense3000' in cell.id:
            continue
        assert cell.budget == (3 if '-b3-' in cell.id else 2)
        assert cell.options['model.architecture.init_cfg.type'] == \
            'Pretrained'
        assert cell.options['model.architecture.init_cfg.checkpoint'] == \
            'work_dirs/quality/scs/det-dense-scsstart-s' \
            f'{cell.seed}/iter_2000.pth'
        assert cell.options['custom_hooks.0.begin'] == 0
        assert cell.options['custom_hooks.0.freeze'] == (
            0.6 if 'freeze' not in cell.id else
            0.3 if 'freeze30' in cell.id else 0.4)
        assert cell.options.get('custom_hooks.0.land_on_target',
                                False) == ('landed' in cell.id)
    # the regression tower ungated: the landed runs, and only that changed
    for seed in (0, 1, 2):
        landed = by_id['det-scs-flops40-b2-fromdense2000itfreeze30lambda'
                       f'from0.05landed-s{seed}']
        ungated = dict(by_id['det-scs-flops40-b2-fromdense2000itfreeze30'
                             'lambdafrom0.05landedregressiontowerungated'
                             f'-s{seed}'].options)
        assert ungated.pop('model.exclude') == ['bbox_head.reg_convs']
        assert ungated == landed.options
    assert harness.format_option('model.exclude', [
        'bbox_head.reg_convs'
    ]) == 'model.exclude=[bbox_head.reg_convs]'
    # the landed recipe at other targets: only the target changes; at
    # budget x3 the SCS stage and its LR decay are twice as long
    landed = by_id['det-scs-flops40-b2-fromdense2000itfreeze30lambda'
                   'from0.05landed-s1'].options
    for target in (0.5, 0.6, 0.7):
        other = dict(by_id[f'det-scs-flops{round(100 * target)}-b2-'
                           'fromdense2000itfreeze30lambdafrom0.05landed-s1'
                           ].options)
        assert other.pop('custom_hooks.0.flops_target') == target
        assert other == {
            k: v
            for k, v in landed.items() if k != 'custom_hooks.0.flops_target'
        }
    longer = by_id['det-scs-flops40-b3-fromdense2000itfreeze30lambda'
                   'from0.05landed-s1']
    assert longer.budget == 3
    assert {k: v
            for k, v in longer.options.items() if k not in landed} == {
                'train_cfg.max_iters': 4000,
                'train_cfg.val_interval': 4000,
                'param_scheduler.1.begin': 3200,
                'param_scheduler.1.end': 4000,
                'param_scheduler.1.T_max': 800
            }
    assert all(longer.options[k] == v for k, v in landed.items())
    # the thinner twins trained as long as SCS's whole budget x2
    thinner = [c for c in cells if c.method == 'dense, thinner']
    assert [(c.id, c.budget) for c in thinner[2:]] == [
        ('det-densethinner-flops40-b2-width20400.43oftheflops-s0', 2),
        ('det-densethinner-flops40-b2-width20400.43oftheflops-s1', 2),
        ('det-densethinner-flops35-b2-width18360.35oftheflops-s0', 2)
    ]
    assert thinner[2].options['train_cfg.max_iters'] == 4000
    assert thinner[4].options['model.bbox_head.feat_channels'] == 36
    # budget x3: the SCS stage trains twice the start's iterations, the LR
    # decay scaled with it, beside dense trained three times as long
    b2 = by_id['det-scs-flops40-b2-fromdense2000it-s0']
    b3 = by_id['det-scs-flops40-b3-fromdense2000it-s0']
    b3_signed = by_id['det-scs-flops40-b3-fromdense2000itsignedlambda-s0']
    assert 'train_cfg.max_iters' not in b2.options
    for cell in (b3, b3_signed):
        assert cell.options['train_cfg.max_iters'] == 4000
        assert cell.options['param_scheduler.1.begin'] == 3200
    dense3 = by_id['det-dense-b3-s0']
    assert dense3.options['train_cfg.max_iters'] == 6000
    assert ids.index('det-dense-b3-s0') < ids.index(b3.id)
    # the same run with the signed controller, and only that changed
    signed = dict(b3_signed.options)
    assert signed.pop('custom_hooks.0.lambda_controller') == 'signed'
    assert signed.pop('custom_hooks.0.lambda_rate') == 0.005
    assert signed == b3.options
    assert b3_signed.variant == 'from dense 2000 it, signed lambda'
    # the restarted control: the same start and the same 2000 iterations as
    # the SCS stage, dense, beside dense x2
    for seed in (0, 1, 2):
        control = by_id[f'det-dense-b2-fromdense2000it-s{seed}']
        assert control.budget == 2 and control.method == 'dense'
        # the dense twin's own cell but for its start, and nothing else
        options = dict(control.options)
        assert options.pop('model.init_cfg.type') == 'Pretrained'
        options.pop('model.init_cfg.checkpoint')
        assert options == grids.det_cell(
            'dense', grids.DET_DENSE, seed=seed).options
        assert control.options['model.init_cfg.checkpoint'] == \
            f'work_dirs/quality/scs/det-dense-scsstart-s{seed}/iter_2000.pth'
        assert 'train_cfg.max_iters' not in control.options
        assert ids.index(f'det-dense-scsstart-s{seed}') < ids.index(
            control.id)
    # the pruning later: a start of 3000 iterations (its own cell, before
    # the cells that read its checkpoint), then 1000 with and without gates
    start = by_id['det-dense-b1.5-scsstart-s0']
    assert start.budget == 1.5
    assert start.options['train_cfg.max_iters'] == 3000
    assert start.options['param_scheduler.1.begin'] == 2400
    later = by_id['det-scs-flops40-b2-fromdense3000itlambdafrom0.05-s0']
    control = by_id['det-dense-b2-fromdense3000it-s0']
    ckpt = 'work_dirs/quality/scs/det-dense-b1.5-scsstart-s0/iter_3000.pth'
    assert later.options['model.architecture.init_cfg.checkpoint'] == ckpt
    assert control.options['model.init_cfg.checkpoint'] == ckpt
    for cell in (later, control):
        assert cell.budget == 2
        assert cell.options['train_cfg.max_iters'] == 1000
        assert cell.options['param_scheduler.1.begin'] == 800
        assert ids.index(start.id) < ids.index(cell.id)
    assert later.options['model.lambda_init'] == 0.05
    assert later.options['custom_hooks.0.freeze'] == 0.6
    # the shorter gating: the freeze and lambda's start, and only those
    assert b2.options['custom_hooks.0.freeze'] == 0.6
    for lam in (0.2, 0.05, 0.1):
        assert by_id['det-scs-flops40-b2-fromdense2000itfreeze40lambdafrom'
                     f'{lam:g}-s0'].options == {
                         **b2.options, 'custom_hooks.0.freeze': 0.4,
                         'model.lambda_init': lam}
    seed1 = by_id['det-scs-flops40-b2-fromdense2000itfreeze40lambdafrom0.1-s1']
    assert seed1.options == {
        **by_id['det-scs-flops40-b2-fromdense2000it-s1'].options,
        'custom_hooks.0.freeze': 0.4, 'model.lambda_init': 0.1}
    assert by_id['det-scs-flops40-b2-fromdense2000itfreeze30-s0'].options == {
        **b2.options, 'custom_hooks.0.freeze': 0.3}
    for make in (grids.scs_from_dense, grids.dense_from_dense):
        with pytest.raises(ValueError, match='budget must leave the stage'):
            make(0, budget=1)
        with pytest.raises(ValueError, match='got budget 2, start 0.5'):
            make(0, start=0.5)
    # the uniformly thinner dense model beside each target
    thin = [c for c in cells if c.method == 'dense, thinner']
    assert [c.sparsity for c in thin] == [
        'FLOPs 50%', 'FLOPs 30%', 'FLOPs 40%', 'FLOPs 40%', 'FLOPs 35%'
    ]
    assert thin[0].options['model.neck.in_channels'] == [22, 44, 88, 176]
    assert thin[0].options['model.bbox_head.feat_channels'] == 44
    assert scs[1].options['custom_hooks.0.flops_target'] == 0.3
    assert harness._x('FLOPs 30%') == pytest.approx(0.7)
    record = dict(
        study='s',
        task='det',
        method='SCS',
        sparsity='FLOPs 30%',
        distribution=None,
        budget=1,
        value=0.5,
        seed=0,
        measured_sparsity=None,
        train_seconds=1.0)
    assert '| method | FLOPs 30% |' in harness.format_table([record])
    record['train_flops'] = 0.6
    assert 'n=1, training FLOPs -40.0% |' in harness.format_table([record])


def test_mean_scalar_averages_the_logged_windows(tmp_path):
    vis = tmp_path / '20261202_000000' / 'vis_data'
    vis.mkdir(parents=True)
    lines = [dict(iter=10, loss=1.0, scs_step_flops=1.0),
             dict(iter=20, loss=0.9, scs_step_flops=0.5),
             dict(iter=30, loss=0.8, scs_step_flops=0.6)]
    (vis / 'scalars.json').write_text(
        '\n'.join(json.dumps(x) for x in lines) + '\n{broken\n')
    assert harness.mean_scalar(str(tmp_path), 'scs_step_flops') == \
        pytest.approx(0.7)
    assert harness.mean_scalar(str(tmp_path), 'absent') is None


def test_partseg_2of4_cells_leave_out_what_2of4_cannot_prune():
    """Every layer the tiny PointNet++'s 2:4 cells prune has an input width
    that divides by 4 (the engine refuses the others by name), and the
    sparsity report measures over the same layers."""
    pytest.importorskip('mmdet3d')
    from mmengine.config import Config

    import gap_mm  # noqa: F401
    from gap_mm.analysis import build_model, prunable_numels
    cells = [c for c in grids.full() if c.sparsity == '2:4'
             and c.task == 'partseg']
    assert len(cells) == 6
    cfg = Config.fromfile(osp.join(ROOT, grids.PN2_GAP))
    model = build_model(cfg)
    params = dict(model.named_parameters())
    hook = dict(cfg.custom_hooks[0])
    indivisible = [
        n for n in prunable_numels(model, hook) if params[n].shape[1] % 4
    ]
    assert indivisible == [
        'sa_modules.1.mlps.0.layer0.conv.weight',
        'sa_modules.2.mlps.0.layer0.conv.weight',
        'fp_modules.2.mlps.layer0.conv.weight'
    ]
    for cell in cells:
        exclude = cell.options['custom_hooks.0.exclude']
        assert cell.report_options == {'custom_hooks.0.exclude': exclude}
        hook['exclude'] = exclude
        kept = prunable_numels(model, hook)
        assert kept and all(params[n].shape[1] % 4 == 0 for n in kept)
        assert set(kept) == set(prunable_numels(
            model, dict(cfg.custom_hooks[0]))) - set(indivisible)
        # ``--cfg-options`` carries the patterns unchanged
        text = harness.format_option('custom_hooks.0.exclude', exclude)
        assert text == 'custom_hooks.0.exclude=[' + ','.join(exclude) + ']'
    assert all('custom_hooks.0.exclude' not in c.options
               for c in grids.full()
               if c.task == 'partseg' and c.sparsity != '2:4')
