# Copyright (c) gap_mm contributors. All rights reserved.
"""One contract for every method: the schedule comes from SCHEDULES, the
events go to ``sparsity_events.jsonl``, and the engine guide's example
method trains."""
import copy
import glob
import json
import os
import os.path as osp
import re
import sys
import types
from unittest import mock

import pytest
import torch
from mmengine.registry import DATASETS, HOOKS, MODELS
from test_gap_hook import GaPRunnerCase
from test_scs import SCSToyNet

from gap_mm.engine import EVENTS_FILE, BaseMethodHook
from gap_mm.engine.hooks import base_method_hook
from gap_mm.registry import SCHEDULES
from gap_mm.sparsity import num_kept
from gap_mm.testing import GaPToyDataset
from gap_mm.testing.hooks import KilledForTest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GUIDE = osp.join(ROOT, 'docs', 'en', 'advanced_guides', 'engine.md')
#: The log line the quality harness parses today.
GAP_LINE = re.compile(r'GaP at iteration (\d+): prune partitions \[([\d, ]*)'
                      r'\], grow partitions \[([\d, ]*)\]')

#: A config of every registered method hook, for the toy run of 16
#: iterations (the SCS one on the SCS toy model).
MASK_HOOKS = {
    'GaPHook':
    dict(
        type='GaPHook',
        sparsity=0.75,
        partitions=2,
        schedule=dict(type='cyclic', period=3, num_rounds=2)),
    'GMPHook':
    dict(type='GMPHook', sparsity=0.5, end=0.5, interval=2),
    'RigLHook':
    dict(type='RigLHook', sparsity=0.5, end=0.5, interval=4),
    'SETHook':
    dict(type='SETHook', sparsity=0.5, end=0.5, interval=4),
    'GRegHook':
    dict(
        type='GRegHook',
        sparsity=0.5,
        update_interval=2,
        granularity=0.25,
        upper_limit=1.0,
        stabilize=0.125,
        mag_ratio_limit=None),
}
SCS_HOOK = dict(
    type='SCSHook',
    freeze=0.5,
    begin=0.125,
    flops_target=0.5,
    lambda_rate=0.5,
    beta_final=64.0,
    lambda_interval=2)


def _events(work_dir):
    path = osp.join(work_dir, EVENTS_FILE)
    if not osp.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def _log_text(work_dir):
    text = ''
    for path in sorted(glob.glob(osp.join(work_dir, '*', '*.log'))):
        with open(path) as f:
            text += f.read()
    return text


class _SpyBuilds:
    """Records every object ``SCHEDULES.build`` returns."""

    def __init__(self):
        self.built = []
        self._build = SCHEDULES.build

    def __call__(self, *args, **kwargs):
        obj = self._build(*args, **kwargs)
        self.built.append(obj)
        return obj


class TestMethodContract(GaPRunnerCase):

    def setUp(self):
        super().setUp()
        MODELS.register_module(module=SCSToyNet, force=True)
        DATASETS.register_module(module=GaPToyDataset, force=True)

    def _scs_cfg(self, hook=SCS_HOOK, max_iters=16):
        cfg = copy.deepcopy(self.cfg)
        cfg.model = dict(
            type='SCSModel',
            architecture=dict(type='SCSToyNet'),
            flops_input_shape=(2, 2, 2),
            lambda_init=1.0)
        cfg.train_cfg = dict(by_epoch=False, max_iters=max_iters)
        cfg.optim_wrapper = dict(
            type='GaPOptimWrapper',
            optimizer=dict(type='AdamW', lr=0.05, weight_decay=0.05))
        cfg.custom_hooks = [hook]
        return cfg

    def _hook_cfg(self, hook):
        cfg = copy.deepcopy(self.cfg)
        if hook['type'] == 'GRegHook':
            cfg.optim_wrapper = dict(
                type='GaPOptimWrapper',
                optimizer=dict(type='AdamW', lr=0.01, weight_decay=0.05))
        cfg.custom_hooks = [hook]
        return cfg

    def _method_hook(self, runner):
        return next(h for h in runner.hooks if isinstance(h, BaseMethodHook))

    # ------------------------------------------------------- schedules
    def test_every_method_hook_builds_its_schedule_through_schedules(self):
        registered = {
            name
            for name, cls in HOOKS.module_dict.items()
            if isinstance(cls, type) and issubclass(cls, BaseMethodHook)
            and cls.__module__.startswith('gap_mm.')
        }
        cases = dict(MASK_HOOKS, SCSHook=SCS_HOOK)
        # a new hook must join this test
        assert registered == set(cases), registered
        schedule_classes = set(SCHEDULES.module_dict.values())
        for name, hook in cases.items():
            with self.subTest(hook=name):
                cfg = self._scs_cfg() if name == 'SCSHook' else \
                    self._hook_cfg(hook)
                spy = _SpyBuilds()
                with mock.patch.object(SCHEDULES, 'build', spy):
                    runner = self._train(cfg, f'schedule_{name}')
                method = self._method_hook(runner)
                assert type(method).__name__ == name
                assert type(method.schedule) in schedule_classes
                assert any(obj is method.schedule for obj in spy.built), name

    def test_fractions_of_the_run_are_converted_once_in_the_base(self):
        runner = self._train(self._hook_cfg(MASK_HOOKS['GMPHook']), 'gmp')
        assert self._method_hook(runner).schedule.end == 8  # 0.5 of 16
        runner = self._train(
            self._hook_cfg(MASK_HOOKS['GRegHook']), 'greg')
        assert self._method_hook(runner).schedule.stabilize == 2
        runner = self._train(self._scs_cfg(), 'scs')
        schedule = self._method_hook(runner).schedule
        assert (schedule.begin, schedule.freeze) == (2, 8)
        # SCS keeps its own, stricter ranges; begin may be 0.0
        runner = self._train(
            self._scs_cfg(dict(SCS_HOOK, begin=0.0)), 'scs_begin_0')
        assert self._method_hook(runner).schedule.begin == 0

    # ---------------------------------------------------------- events
    def test_gap_events_name_the_iterations_of_the_log_lines(self):
        runner = self._train(self.cfg, 'gap_events')
        events = _events(runner.work_dir)
        logged = [(int(n), [int(k) for k in p.split(',') if k.strip()],
                   [int(k) for k in g.split(',') if k.strip()])
                  for n, p, g in GAP_LINE.findall(_log_text(runner.work_dir))]
        # T=3, R=2, K=2: grow 0 at 0, then every 3 iterations
        assert logged == [(0, [], [0]), (3, [0], [1]), (6, [1], [0]),
                          (9, [0], [1]), (12, [1], [])]
        gap = [(e['iter'], e['prune'], e['grow']) for e in events
               if e['event'] == 'gap']
        assert gap == logged
        assert events[0] == dict(
            iter=0, hook='GaPHook', event='init', init='magnitude',
            sparsity=0.75)
        assert all(e['hook'] == 'GaPHook' for e in events)
        assert [e['event'] for e in events] == ['init'] + ['gap'] * 5
        # the sparsity after each event: one of two partitions dense
        assert events[1]['sparsity'] < 0.75 and events[-1]['sparsity'] == \
            pytest.approx(0.75, abs=0.01)

    def test_events_of_every_mask_method(self):
        # (kinds of event, iterations of the method's own events)
        expected = dict(
            GMPHook=({'prune'}, [2, 4, 6, 8]),  # starts dense: no init
            RigLHook=({'init', 'drop_grow'}, [4, 8]),
            SETHook=({'init', 'drop_grow'}, [4, 8]),
            GRegHook=({'prune'}, None))  # dense until its one prune
        for name, (kinds, iters) in expected.items():
            with self.subTest(hook=name):
                runner = self._train(
                    self._hook_cfg(MASK_HOOKS[name]), f'events_{name}')
                hook = self._method_hook(runner)
                events = _events(runner.work_dir)
                assert {e['event'] for e in events} == kinds, events
                assert all(e['hook'] == name for e in events)
                log = _log_text(runner.work_dir)
                own = [e for e in events if e['event'] != 'init']
                for e in own:
                    assert f'{hook.method_name} at iteration {e["iter"]}: ' \
                        in log, e
                if iters is None:
                    iters = [hook.pruned_at]
                assert [e['iter'] for e in own] == iters
                assert own[-1]['sparsity'] == pytest.approx(0.5, abs=0.01)

    def test_static_mask_records_only_its_initial_masks(self):
        hook = dict(MASK_HOOKS['GaPHook'], schedule=dict(type='static'),
                    init='random')
        runner = self._train(self._hook_cfg(hook), 'static')
        assert _events(runner.work_dir) == [
            dict(iter=0, hook='GaPHook', event='init', init='random',
                 sparsity=0.75)
        ]

    def test_events_are_written_by_rank_0_only(self):
        hook = BaseMethodHook()
        for rank, written in ((1, False), (0, True)):
            work_dir = osp.join(self.temp_dir.name, f'rank{rank}')
            runner = types.SimpleNamespace(work_dir=work_dir)
            os.makedirs(work_dir)
            with mock.patch.object(base_method_hook.dist, 'get_rank',
                                   return_value=rank):
                hook.record_event(runner, 5, 'gap', prune=[1], grow=[])
            assert osp.isfile(osp.join(work_dir, EVENTS_FILE)) == written
        assert _events(work_dir) == [
            dict(iter=5, hook='BaseMethodHook', event='gap', prune=[1],
                 grow=[])
        ]
        with pytest.raises(ValueError, match=r"\['iter'\]"):
            hook.record_event(runner, 5, 'gap', iter=3)

    def test_scs_freeze_and_summary_match_the_logged_values(self):
        sys.path.insert(0, osp.join(ROOT, 'benchmarks', 'quality'))
        try:
            import runner as quality_runner
        finally:
            sys.path.pop(0)
        # the mean of the logged values, whatever the logging
        # interval (the quality grid logs every 10 iterations); LogProcessor
        # logs this key's value at the iteration, not a window mean
        for window in (1, 4):
            cfg = self._scs_cfg()
            cfg.log_processor = dict(by_epoch=False, window_size=window)
            cfg.default_hooks.logger = dict(
                type='LoggerHook', interval=window)
            cfg.visualizer = dict(
                type='Visualizer',
                vis_backends=[dict(type='LocalVisBackend')])
            runner = self._train(cfg, f'scs_summary_{window}')
            events = _events(runner.work_dir)
            assert [e['event'] for e in events] == ['freeze', 'summary']
            freeze, summary = events
            assert freeze['iter'] == 8 and freeze['hook'] == 'SCSHook'
            assert 'SCS at iteration 8: structure frozen, FLOPs ' \
                f'{freeze["flops"]:.3f}' in _log_text(runner.work_dir)
            assert freeze['landed'] is False and freeze['target'] == 0.5
            assert summary['iter'] == 16
            logged = quality_runner.logged_scalars(runner.work_dir,
                                                   'scs_step_flops')
            assert len(logged) == 16 // window
            expected = sum(logged.values()) / len(logged)
            values = summary['values']
            assert values['train_flops'] == pytest.approx(expected, rel=1e-12)
            if window == 1:  # every iteration logged
                assert values['train_flops_all_iterations'] == \
                    pytest.approx(expected, rel=1e-12)
            else:
                assert values['train_flops_all_iterations'] != \
                    pytest.approx(expected, rel=1e-6)
            assert values['train_flops_all_iterations'] < 1.0  # gated

    def test_scs_summary_survives_a_resume_exactly(self):
        cfg = self._scs_cfg()
        cfg.default_hooks.checkpoint = dict(
            type='CheckpointHook', interval=2, by_epoch=False)
        straight = self._train(cfg, 'scs_straight')
        first = copy.deepcopy(cfg)
        first.custom_hooks.append(dict(type='KillAfterIterHook', iteration=6))
        with pytest.raises(KilledForTest):
            self._train(first, 'scs_first')
        ckpt = torch.load(
            osp.join(self.temp_dir.name, 'scs_first', 'iter_6.pth'),
            weights_only=True)
        assert ckpt['scs_state']['method']['flops_count'] == 6
        resumed = copy.deepcopy(cfg)
        resumed.resume = True
        resumed.load_from = osp.join(self.temp_dir.name, 'scs_first',
                                     'iter_6.pth')
        runner = self._train(resumed, 'scs_resumed')
        a = _events(straight.work_dir)[-1]
        b = _events(runner.work_dir)[-1]
        assert a['event'] == b['event'] == 'summary'
        assert a['values'] == b['values']

    # ----------------------------------------------- the guide's example
    def test_the_engine_guides_example_method_trains(self):
        with open(GUIDE) as f:
            text = f.read()
        section = text[text.index('### A complete example'):]
        code = section[section.index('```python\n') + 10:]
        code = code[:code.index('```')]
        for registry, name in ((HOOKS, 'MagnitudeOnceHook'),
                               (SCHEDULES, 'OnceSchedule')):
            registry._module_dict.pop(name, None)
        module = types.ModuleType('my_method')
        try:
            exec(compile(code, GUIDE, 'exec'), module.__dict__)
            cfg = self._hook_cfg(
                dict(type='MagnitudeOnceHook', at=0.5, sparsity=0.75))
            runner = self._train(cfg, 'magnitude_once')
        finally:
            HOOKS._module_dict.pop('MagnitudeOnceHook', None)
            SCHEDULES._module_dict.pop('OnceSchedule', None)
        hook = self._method_hook(runner)
        assert type(hook.schedule).__name__ == 'OnceSchedule'
        assert hook.schedule.at == 8
        for row in hook.sparsifier.layer_stats():
            assert row['kept'] == num_kept(row['numel'], 0.75), row
        assert _events(runner.work_dir) == [
            dict(iter=8, hook='MagnitudeOnceHook', event='prune',
                 sparsity=pytest.approx(0.75, abs=1e-3))
        ]
        assert 'MagnitudeOnce at iteration 8: prune once; sparsity' in \
            _log_text(runner.work_dir)
        # the number of lines the guide states is the example's
        assert len(code.strip().splitlines()) == 47
        assert 'one file of 47 lines' in section
