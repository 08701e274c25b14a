# Copyright (c) gap_mm contributors. All rights reserved.
"""What every grid of the quality benchmark must be, whatever cells it
holds: unique cells, configs that exist, starts that come first, and
studies whose cells differ only in what they declare. Each check is a
function that lists the problems it finds, shown to find them on a
doctored cell."""
import dataclasses
import os.path as osp
import sys
from collections import OrderedDict

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks', 'quality'))
import grids  # noqa: E402
from cell import format_option  # noqa: E402

GRIDS = {name: make() for name, make in grids.GRIDS.items()}

#: Options a cell's sparsity sets (the tiny PointNet++'s exclude only
#: under an N:M pattern), and those its budget sets.
SPARSITY_KEYS = ('gap_sparsity', 'gap_distribution', 'gap_pattern',
                 'custom_hooks.0.flops_target')
NM_KEYS = ('custom_hooks.0.exclude', )
BUDGET_KEYS = tuple(grids.budget_options(2))


def _is_checkpoint(key):
    return key == 'load_from' or key.endswith('init_cfg.checkpoint')


def duplicates(cells):
    """Ids, and places in the tables (every label), held by two cells."""
    problems = []
    ids = [c.id for c in cells]
    problems += [f'id {i} twice' for i in OrderedDict.fromkeys(ids)
                 if ids.count(i) > 1]
    places = [(c.study, c.task, c.method, str(c.sparsity), c.distribution,
               c.budget, c.variant, c.procs, c.seed) for c in cells]
    problems += [f'labels {p} twice' for p in OrderedDict.fromkeys(places)
                 if places.count(p) > 1]
    return problems


def missing_configs(cells):
    return [
        f'{c.id}: {path}' for c in cells
        for path in (c.config, c.report_config) if path is not None
        and not osp.isfile(osp.join(ROOT, path))
    ]


def _trained_iters(cell):
    return cell.options.get('train_cfg.max_iters', grids.DET_ITERS)


def start_problems(grid, cells):
    """A cell that loads a checkpoint names its start cell, which comes
    earlier in the same grid and is where the checkpoint is written."""
    problems = []
    index = {c.id: i for i, c in enumerate(cells)}
    for i, cell in enumerate(cells):
        loads = [v for k, v in cell.options.items() if _is_checkpoint(k)]
        if cell.starts_from is None:
            problems += [f'{cell.id} loads {v} from no start' for v in loads]
            continue
        if index.get(cell.starts_from, len(cells)) >= i:
            problems.append(f'{cell.id} starts from {cell.starts_from}, '
                            'which is not earlier in the grid')
            continue
        start = cells[index[cell.starts_from]]
        want = osp.join('work_dirs', 'quality', grid, start.id,
                        f'iter_{_trained_iters(start)}.pth')
        if start.task != 'det' or loads != [want]:
            problems.append(f'{cell.id} loads {loads}, not {want}')
    return problems


def _declared_problems(cell, by_id):
    """The declared options that the cell's declared fields do not
    explain, and labels that disagree with the options."""
    problems = []
    opts = cell.options
    allowed = SPARSITY_KEYS + BUDGET_KEYS
    if isinstance(cell.sparsity, str) and ':' in cell.sparsity:
        allowed += NM_KEYS
    extra = [k for k in cell.declared if k not in allowed]
    if extra and not cell.variant:
        problems.append(f'{cell.id} declares {extra} without a variant')
    problems += [
        f'{cell.id} declares {k}, which it does not set'
        for k in cell.declared if k not in opts
    ]
    labels = {
        'gap_sparsity': cell.sparsity,
        'gap_distribution': cell.distribution,
        'gap_pattern': cell.sparsity,
    }
    problems += [
        f'{cell.id}: {k}={opts[k]!r} under the label {labels[k]!r}'
        for k in labels if k in opts and opts[k] != labels[k]
    ]
    target = opts.get('custom_hooks.0.flops_target')
    if target is not None and cell.sparsity != grids.flops_column(target):
        problems.append(f'{cell.id}: FLOPs target {target} under the label '
                        f'{cell.sparsity!r}')
    if cell.task == 'det':
        stage = cell.budget
        if cell.starts_from in by_id:
            stage -= by_id[cell.starts_from].budget
        iters = round(grids.DET_ITERS * stage)
        if _trained_iters(cell) != iters:
            problems.append(f'{cell.id}: budget x{cell.budget:g} trains '
                            f'{_trained_iters(cell)} iterations, not {iters}')
    return problems


def study_problems(cells):
    """Within a study (a table: study and task), the cells differ in their
    method (its config, one per method and variant), sparsity,
    distribution, seed, budget and variant-declared options, and in
    nothing else."""
    problems = []
    by_id = {c.id: c for c in cells}
    studies = OrderedDict()
    for cell in cells:
        studies.setdefault((cell.study, cell.task), []).append(cell)
    for place, members in studies.items():
        common = None
        configs = {}
        for cell in members:
            problems += _declared_problems(cell, by_id)
            rest = {
                k: v
                for k, v in cell.options.items() if k not in cell.declared
            }
            if common is None:
                common = (cell.id, rest)
            elif rest != common[1]:
                keys = sorted(
                    k for k in set(rest) | set(common[1])
                    if rest.get(k, None) != common[1].get(k, None))
                problems.append(f'{cell.id} differs from {common[0]} in '
                                f'{keys}, which neither declares')
            config = configs.setdefault((cell.method, cell.variant),
                                        cell.config)
            if config != cell.config:
                problems.append(f'{cell.id}: {cell.method} with '
                                f'{cell.config}, elsewhere {config}')
    return problems


@pytest.mark.parametrize('grid', sorted(GRIDS))
def test_cells_and_their_places_are_unique(grid):
    assert GRIDS[grid] and duplicates(GRIDS[grid]) == []


@pytest.mark.parametrize('grid', sorted(GRIDS))
def test_every_config_exists(grid):
    assert missing_configs(GRIDS[grid]) == []


@pytest.mark.parametrize('grid', sorted(GRIDS))
def test_every_start_checkpoint_comes_from_an_earlier_cell(grid):
    assert start_problems(grid, GRIDS[grid]) == []


@pytest.mark.parametrize('grid', sorted(GRIDS))
def test_a_study_differs_only_in_what_its_cells_declare(grid):
    assert study_problems(GRIDS[grid]) == []


def test_every_option_passes_on_a_command_line():
    for cells in GRIDS.values():
        for cell in cells:
            for key, value in cell.all_options().items():
                format_option(key, value)


def test_the_checks_find_a_doctored_cell():
    cells = GRIDS['scs']
    by_id = {c.id: c for c in cells}
    landed = by_id['det-scs-flops40-b2-fromdense2000itfreeze30lambdafrom'
                   '0.05landed-s1']
    replace = dataclasses.replace
    # the same cell twice; another id on the same place of the table
    place = ('main', 'det', 'SCS', 'FLOPs 40%', None, 2, landed.variant, 1,
             1)
    assert duplicates(cells + [landed]) == [
        f'id {landed.id} twice', f'labels {place} twice'
    ]
    assert duplicates(cells + [replace(landed, id='x')]) == [
        f'labels {place} twice'
    ]
    # a config that is not there
    assert missing_configs([replace(landed, config='configs/gone.py')]) == [
        f'{landed.id}: configs/gone.py'
    ]
    # the start after the cell that reads it; a start of another grid;
    # a checkpoint without a start
    start = by_id[landed.starts_from]
    late = [c for c in cells if c is not start] + [start]
    assert f'{landed.id} starts from {start.id}, which is not earlier in ' \
        'the grid' in start_problems('scs', late)
    assert start_problems('greg', [start, landed]) == [
        f'{landed.id} loads [\'work_dirs/quality/scs/{start.id}/iter_2000'
        ".pth'], not work_dirs/quality/greg/"
        f'{start.id}/iter_2000.pth'
    ]
    assert start_problems('scs', [start,
                                  replace(landed, starts_from=None)]) == [
        f'{landed.id} loads work_dirs/quality/scs/{start.id}/iter_2000.pth '
        'from no start'
    ]
    # an option no declared field sets; one that a plain cell declares; a
    # label that says another sparsity; a budget that trains otherwise
    twin = by_id['det-dense-s0']
    assert study_problems(
        [twin, replace(twin, id='t', options={**twin.options, 'm.x': 1})]
    ) == ["t differs from det-dense-s0 in ['m.x'], which neither declares"]
    assert study_problems([
        twin,
        replace(twin, id='t', options={**twin.options, 'm.x': 1},
                declared=('m.x', ))
    ]) == ["t declares ['m.x'] without a variant"]
    gap = GRIDS['full'][1]
    assert study_problems([replace(gap, sparsity=0.9)]) == [
        f"{gap.id}: gap_sparsity=0.8 under the label 0.9"
    ]
    assert study_problems([replace(twin, budget=2)]) == [
        'det-dense-s0: budget x2 trains 2000 iterations, not 4000'
    ]
    assert study_problems([start, replace(landed, budget=3)]) == [
        f'{landed.id}: budget x3 trains 2000 iterations, not 4000'
    ]
    # the same method with two configs in one table
    assert study_problems([twin, replace(twin, id='t', seed=1,
                                         config=grids.DET_GAP)]) == [
        f't: dense with {grids.DET_GAP}, elsewhere {grids.DET_DENSE}'
    ]


def test_a_variant_is_both_changes_the_second_winning():
    a = grids.Variant('a', 'A', {'x': 1, 'y': 1})
    b = grids.Variant('b', 'B', {'y': 2})
    assert a + b == grids.Variant('ab', 'A, B', {'x': 1, 'y': 2})
    assert list((a + b).options) == ['x', 'y']
    assert grids.PLAIN + b == b and a + grids.PLAIN == a


def test_budget_scales_the_recipe_and_the_gap_period():
    assert grids.budget_options(1) == {}
    assert grids.budget_options(2) == {
        'train_cfg.max_iters': 4000,
        'train_cfg.val_interval': 4000,
        'param_scheduler.1.begin': 3200,
        'param_scheduler.1.end': 4000,
        'param_scheduler.1.T_max': 800,
        'custom_hooks.0.schedule.period': 400,
    }
    assert 'custom_hooks.0.schedule.period' not in grids.budget_options(
        0.5, gap=False)


def test_a_from_dense_stage_must_be_long_enough():
    for make in (lambda **kw: grids.scs_from_dense(0, 0.4, **kw),
                 lambda **kw: grids.dense_from_dense(0, **kw)):
        with pytest.raises(ValueError, match='budget must leave the stage'):
            make(budget=1)
        with pytest.raises(ValueError, match='got budget 2, start 0.5'):
            make(start=0.5)


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
        text = format_option('custom_hooks.0.exclude', exclude)
        assert text == 'custom_hooks.0.exclude=[' + ','.join(exclude) + ']'
    assert all('custom_hooks.0.exclude' not in c.options
               for c in grids.full()
               if c.task == 'partseg' and c.sparsity != '2:4')
