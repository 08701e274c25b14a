# Copyright (c) gap_mm contributors. All rights reserved.
"""GReg (growing regularization) on the shared engine: the schedule, the
penalty, the pick, the prune, filter-wise coupling, resume, 2 ranks."""
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import HOOKS, MODELS
from test_baseline_hooks import BaselineRunnerCase
from test_distributed import WORLD, _finish, _results, _state, _toy_runner
from test_gap_hook import MaskInvariantHook
from torch import nn

from gap_mm.engine import GRegHook
from gap_mm.errors import GaPConfigError
from gap_mm.schedules import GRegSchedule, ScheduleError
from gap_mm.sparsity import (GrowingPenalty, coupled_filter_params,
                             filter_scores, num_kept, pick_pruned, topk_masks)
from gap_mm.testing.e2e import free_port

# GReg-1: updates at 0, 2, 4, 6 take the picked set's penalty to 0.25, 0.5,
# 0.75, 1.0; stabilize 3: the prune applies from iteration 9 (of 16).
GREG1 = dict(
    type='GRegHook',
    sparsity=0.75,
    update_interval=2,
    granularity=0.25,
    upper_limit=1.0,
    stabilize=3,
    mag_ratio_limit=None)
# GReg-2: every weight at 0.05, 0.10, 0.15 at 0, 2, 4, picked at 4; the
# picked set then at 0.45, 0.75, 1.05 at 6, 8, 10 (kept: -0.01); stabilize
# 2: the prune applies from 12.
GREG2 = dict(
    GREG1,
    variant=2,
    granularity_pick=0.05,
    upper_limit_pick=0.15,
    granularity=0.3,
    granularity_recover=-0.01,
    stabilize=2)


class GRegLogHook(Hook):
    """After every iteration (LOWEST: after GReg's update for the next
    one): the penalty values, phase, picked sets, weights and masks."""

    priority = 'LOWEST'

    def __init__(self):
        self.records = []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        hook = next(h for h in runner.hooks if isinstance(h, GRegHook))
        sp = hook.sparsifier
        self.records.append(
            dict(
                step=runner.iter + 1,
                phase=hook.phase,
                values=dict(hook.penalty.values),
                picked={
                    n: m.clone()
                    for n, m in hook.picked.items()
                },
                pick_at=hook.pick_at,
                weights={
                    n: p.detach().clone()
                    for n, p in sp.params.items()
                },
                masks={n: sp.keep_mask(n)
                       for n in sp.names}))


class BasicBlock(nn.Module):
    """A residual block shaped like mmdet's: conv1, conv2, downsample."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class GRegResToyModel(BaseModel):
    """stem conv → BasicBlock → Linear → Linear, on the toy data's 8
    features as a 2-channel 2x2 image."""

    def __init__(self, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.block = BasicBlock(4, 8)
        self.fc = nn.Linear(32, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if isinstance(inputs, (list, tuple)):
            inputs = torch.stack(inputs)
        if isinstance(data_samples, (list, tuple)):
            data_samples = torch.stack(data_samples)
        x = torch.relu(self.stem(inputs.view(-1, 2, 2, 2)))
        x = torch.relu(self.fc(self.block(x).flatten(1)))
        out = self.head(x).squeeze(1)
        if mode == 'loss':
            return dict(loss=((out - data_samples)**2).mean())
        return out


COUPLED = ['block.conv2.weight', 'block.downsample.0.weight']


# ------------------------------------------------------------ pure parts
def test_schedule_phases_and_values():
    s = GRegSchedule(
        **{
            k: v
            for k, v in GREG1.items()
            if k in ('update_interval', 'granularity', 'upper_limit',
                     'stabilize')
        })
    assert [s.update_index(t)
            for t in range(7)] == [1, None, 2, None, 3, None, 4]
    assert (s.num_pick, s.num_grow, s.pick_step()) == (0, 4, 0)
    assert [s.reg_pruned(k) for k in range(1, 6)] == [.25, .5, .75, 1., 1.]
    assert (s.last_growth_step(), s.prune_step(), s.required_length()) == \
        (6, 9, 10)
    s2 = GRegSchedule(
        **{
            k: v
            for k, v in GREG2.items()
            if k != 'type' and k not in ('sparsity', 'mag_ratio_limit')
        })
    assert (s2.num_pick, s2.num_grow, s2.pick_step()) == (3, 3, 4)
    # exactly u * granularity (no float accumulation)
    assert [s2.reg_pick(u)
            for u in (1, 2, 3, 4)] == [u * 0.05 for u in (1, 2, 3, 3)]
    assert s2.reg_pruned(3) == pytest.approx(1.05)
    assert s2.reg_kept(1) == -0.01
    assert (s2.last_growth_step(), s2.prune_step()) == (10, 12)
    # the defaults: 1 / 1e-4 = 10000 growth updates every 5 iterations
    d = GRegSchedule()
    assert (d.num_grow, d.last_growth_step()) == (10000, 49995)
    assert GRegSchedule(variant=2).num_pick == 1000


def test_penalty_is_one_fused_update_of_reg_times_w():
    gen = torch.Generator().manual_seed(0)
    params = {
        'a': nn.Parameter(torch.randn(4, 3, 2, 2, generator=gen)),
        'b': nn.Parameter(torch.randn(5, 6, generator=gen))
    }
    for mode in ('unstructured', 'filter'):
        pen = GrowingPenalty(params, mode)
        picked = {
            'a': torch.tensor([True, False, True, False]),
            'b': torch.tensor([False, False, False, True, True])
        }
        if mode == 'unstructured':
            picked = {
                n: torch.rand(p.shape, generator=gen) < 0.5
                for n, p in params.items()
            }
        grads = {}
        for name, param in params.items():
            param.grad = torch.randn(param.shape, generator=gen)
            grads[name] = param.grad.clone()
            pen.set_(name, picked[name], 0.7, -0.1)
        calls = []
        real = torch._foreach_addcmul_
        torch._foreach_addcmul_ = lambda *a, **k: calls.append(1) or real(
            *a, **k)
        try:
            assert pen.apply_(2.0) == 2
        finally:
            torch._foreach_addcmul_ = real
        assert calls == [1]  # one fused call over every layer
        for name, param in params.items():
            where = picked[name]
            if mode == 'filter':
                where = where.view(-1,
                                   *([1] * (param.dim() - 1))).expand_as(param)
            reg = torch.where(where, 0.7, -0.1)
            expected = grads[name] + 2.0 * reg * param.detach()
            assert torch.allclose(param.grad, expected, atol=1e-6), name
        pen.set_('a', picked['a'], 0.0, 0.0)
        assert list(pen.regs) == ['b']  # a zero penalty holds no tensor


def test_filter_pick_takes_the_smallest_mean_magnitudes():
    from gap_mm.sparsity import Sparsifier
    gen = torch.Generator().manual_seed(1)
    w = nn.Parameter(torch.randn(10, 3, 3, 3, generator=gen))
    sp = Sparsifier({'w': w}, sparsity=0.65)
    picked = pick_pruned(sp, ['w'], 'filter')['w']
    assert int(picked.sum()) == 10 - num_kept(10, 0.65)  # 7 (round 6.5)
    means = w.detach().abs().flatten(1).mean(1)
    assert means[picked].max() < means[~picked].min()
    assert torch.equal(filter_scores(w.detach().abs()), means)


def test_filter_mode_leaves_out_transposed_convs_and_attention():
    from gap_mm.engine.hooks.greg_hook import GRegHook
    from gap_mm.sparsity import dense_weights
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ConvTranspose2d(8, 8, 2),
        nn.MultiheadAttention(8, 2), nn.Linear(8, 4))
    hook = GRegHook(mode='filter', sparsity=0.5)
    hook.distribution = 'uniform'
    params = hook.select_params(model)
    assert list(params) == ['0.weight', '2.out_proj.weight', '3.weight']
    assert 'output channels on dim 1' in params.left_out['1.weight']
    assert 'q, k and v' in params.left_out['2.in_proj_weight']
    # the start table says why they stay dense
    rows = {r['name']: r for r in dense_weights(model, params)}
    assert rows['1.weight']['why'] == params.left_out['1.weight']
    # unstructured GReg prunes them
    hook = GRegHook(sparsity=0.5)
    assert '1.weight' in hook.select_params(model)


def test_coupled_layers_of_residual_blocks():
    found = coupled_filter_params(GRegResToyModel())
    assert list(found) == COUPLED
    assert 'residual sum of block' in found['block.conv2.weight']


def test_coupled_layers_of_mmdet_resnet18_and_fpn():
    mmdet = pytest.importorskip('mmdet.models')
    backbone = mmdet.ResNet(depth=18, base_channels=8, init_cfg=None)
    found = coupled_filter_params(backbone)
    expected = ['conv1.weight'] + [
        f'layer{i}.{j}.conv2.weight' for i in range(1, 5) for j in range(2)
    ] + [f'layer{i}.0.downsample.0.weight' for i in range(2, 5)]
    assert sorted(found) == sorted(expected)
    assert 'identity shortcut of layer1.0' in found['conv1.weight']
    neck = mmdet.FPN(in_channels=[8, 16], out_channels=8, num_outs=2)
    assert sorted(coupled_filter_params(neck)) == sorted(
        [f'lateral_convs.{i}.conv.weight'
         for i in range(2)] + [f'fpn_convs.{i}.conv.weight' for i in range(2)])


# ------------------------------------------------------------ on a runner
class GRegRunnerCase(BaselineRunnerCase):

    def setUp(self):
        super().setUp()
        HOOKS.register_module(module=GRegLogHook, force=True)
        MODELS.register_module(module=GRegResToyModel, force=True)
        self.cfg.default_hooks.checkpoint = dict(
            type='CheckpointHook', interval=2, by_epoch=False)

    def _with_hook(self, hook):
        cfg = super()._with_hook(hook)
        cfg.custom_hooks.append(dict(type='GRegLogHook'))
        return cfg

    def _records(self, runner):
        return self._log(runner, GRegLogHook).records


class TestGReg1(GRegRunnerCase):

    def test_penalty_grows_as_scheduled_then_exact_prune(self):
        runner = self._train(self._with_hook(GREG1), 'greg1')
        hook = next(h for h in runner.hooks if isinstance(h, GRegHook))
        records = self._records(runner)
        sp = hook.sparsifier
        picked = records[0]['picked']
        assert records[0]['pick_at'] == 0
        for rec in records:
            step = rec['step']  # the values and masks of this step
            if step < 9:
                expected = 0.25 * min(step // 2 + 1, 4)
                assert rec['values'] == {
                    n: (expected, 0.0)
                    for n in sp.names
                }, step
                assert all(m is None for m in rec['masks'].values()), step
                assert rec['phase'] == ('grow' if step < 6 else 'stabilize')
            else:  # pruned: masks are the picked sets, penalty gone
                assert rec['phase'] == 'finetune' and rec['values'] == {}
                for name, keep in rec['masks'].items():
                    assert torch.equal(keep, ~picked[name]), (step, name)
                    assert int(keep.sum()) == num_kept(keep.numel(), 0.75)
                    assert (rec['weights'][name][~keep] == 0).all()
        assert hook.pruned_at == 9
        # the initial pick is the magnitude top-k of the initial weights
        check = self._log(runner, MaskInvariantHook)
        assert check.prunes == 4 and check.grows == 0
        # the scalar the logs show
        assert runner.message_hub.get_scalar('train/greg_reg').current() == 0.0

    def test_picked_weights_fall_far_below_the_kept(self):
        cfg = self._with_hook(
            dict(
                GREG1,
                granularity=8.0,
                upper_limit=32.0,
                stabilize=20,
                update_interval=2))
        cfg.optim_wrapper = dict(
            type='GaPOptimWrapper',
            optimizer=dict(type='SGD', lr=0.05, weight_decay=1e-4))
        cfg.train_cfg = dict(by_epoch=False, max_iters=32)
        records = self._records(self._train(cfg, 'magnitude'))
        before = next(r for r in records if r['step'] == 25)  # prune at 26
        assert before['phase'] == 'stabilize'
        first = records[0]
        for name, picked in before['picked'].items():
            mag0 = first['weights'][name].abs()
            mag = before['weights'][name].abs()
            ratio0 = mag0[~picked].mean() / mag0[picked].mean()
            ratio = mag[~picked].mean() / mag[picked].mean()
            # the picked weights shrank to < 1/4 of their start, the kept
            # ones did not shrink: mean |kept| / mean |picked| went from
            # about 3-4 to more than 25
            assert mag[picked].mean() < 0.25 * mag0[picked].mean(), name
            assert mag[~picked].mean() > 0.9 * mag0[~picked].mean(), name
            assert ratio > 25 and ratio > 6 * ratio0, (name, float(ratio))

    def test_magnitude_ratio_stops_growth_early(self):
        # every layer's kept weights are already > 1.2x its picked ones, so
        # every layer stops at the first growth update: no penalty at all,
        # and the prune comes stabilize=3 iterations later
        runner = self._train(
            self._with_hook(dict(GREG1, mag_ratio_limit=1.2)), 'ratio')
        hook = next(h for h in runner.hooks if isinstance(h, GRegHook))
        assert hook.pruned_at == 3
        assert all(r['values'] == {} for r in self._records(runner))
        assert all(1.2 < v < 1000 for v in hook.mag_ratio.values())

    def test_resume_is_bitwise_identical_in_every_phase(self):
        hook = dict(GREG1, mag_ratio_limit=50.0)
        # grow (with magnitude ratios), fine-tune; GReg-2's test below
        # covers the pick and stabilize phases, the filter-wise one grow
        for kill_at in (4, 12):
            with self.subTest(kill_at=kill_at):
                self._assert_resume_is_bitwise_identical(hook, kill_at)


class TestGReg2(GRegRunnerCase):

    def test_pick_phase_then_growth_on_the_picked_set(self):
        runner = self._train(self._with_hook(GREG2), 'greg2')
        records = self._records(runner)
        by_step = {r['step']: r for r in records}
        names = list(by_step[1]['values'])
        for step in (1, 2, 3):  # pick phase: every weight alike
            assert by_step[step]['phase'] == 'pick'
            expected = 0.05 * (step // 2 + 1)
            for name in names:
                assert by_step[step]['values'][name] == pytest.approx(
                    (expected, expected), abs=0)
        pick = by_step[4]
        assert pick['pick_at'] == 4 and by_step[3]['pick_at'] is None
        # picked by the magnitudes of step 4
        for name, picked in pick['picked'].items():
            weight = pick['weights'][name]
            expected = topk_masks([weight.abs()],
                                  num_kept(weight.numel(), 0.75),
                                  pruned=True)[0]
            assert torch.equal(picked, expected), name
        for step, k in ((6, 1), (8, 2), (10, 3), (11, 3)):
            for name in names:
                pruned, kept = by_step[step]['values'][name]
                assert pruned == pytest.approx(0.15 + 0.3 * k)
                assert kept == -0.01
        assert by_step[11]['phase'] == 'stabilize'
        assert by_step[12]['phase'] == 'finetune'
        for name, keep in by_step[16]['masks'].items():
            assert torch.equal(keep, ~pick['picked'][name]), name

    def test_resume_is_bitwise_identical_in_every_phase(self):
        for kill_at in (2, 10):  # pick, stabilize
            with self.subTest(kill_at=kill_at):
                self._assert_resume_is_bitwise_identical(GREG2, kill_at)


class TestGRegFilterWise(GRegRunnerCase):

    def setUp(self):
        super().setUp()
        self.cfg.model = dict(type='GRegResToyModel')

    HOOK = dict(GREG2, mode='filter', sparsity=0.5, mag_ratio_limit=30.0)

    def test_whole_filters_and_never_a_coupled_layer(self):
        runner = self._train(self._with_hook(self.HOOK), 'filter')
        hook = next(h for h in runner.hooks if isinstance(h, GRegHook))
        assert hook.describe_pattern() == 'whole filters'  # for the log
        # the layers left out, as the log names them
        assert hook.coupled == {
            n: 'the residual sum of block'
            for n in COUPLED
        }
        sp = hook.sparsifier
        for name in COUPLED:
            assert name not in sp.params
        records = self._records(runner)
        for rec in records:
            assert not set(rec['values']) & set(COUPLED)
        params = dict(runner.model.named_parameters())
        for name in COUPLED:  # dense and unmasked at the end
            assert (params[name] != 0).all(), name
        picked = next(r for r in records if r['pick_at'])['picked']
        for name, keep in records[-1]['masks'].items():
            out = sp.params[name].shape[0]
            n_pruned = out - num_kept(out, 0.5)
            assert int(picked[name].sum()) == n_pruned, name
            if n_pruned == 0:  # head: 1 filter, nothing to prune
                assert keep is None
                continue
            filters = keep.flatten(1)
            # whole filters: each is all kept or all pruned
            assert ((filters.all(1)) | (~filters).all(1)).all(), name
            assert torch.equal(~filters.all(1), picked[name])
            assert (sp.params[name][~keep] == 0).all()

    def test_pruned_channels_are_removed_whole(self):
        runner = self._train(self._with_hook(self.HOOK), 'channels')
        hook = next(h for h in runner.hooks if isinstance(h, GRegHook))
        keep = hook.sparsifier.keep_mask('block.conv1.weight')
        dead = ~keep.flatten(1).any(1)
        assert int(dead.sum()) == 4  # half of 8 filters
        bn1 = runner.model.block.bn1
        # the channel's norm scale and shift went with the filter, and the
        # kept channels' did not; the optimizer state there is 0 too
        assert set(hook.dead_channels) == {
            'block.bn1.weight', 'block.bn1.bias'}
        for param in (bn1.weight, bn1.bias):
            assert (param[dead] == 0).all()
            assert (param[~dead] != 0).all()
            for value in runner.optim_wrapper.optimizer.state[param].values():
                if value.shape == param.shape:
                    assert (value[dead] == 0).all()
        # so the channel is exactly 0 after bn1 and the ReLU (eval mode)
        runner.model.eval()
        x = torch.randn(5, 4, 2, 2)
        out = runner.model.block.relu(bn1(runner.model.block.conv1(x)))
        assert (out[:, dead] == 0).all() and (out[:, ~dead] != 0).any()
        # fc has no channel group: its pruned rows keep their bias
        assert 'fc.weight' not in hook._followers

    def test_resume_is_bitwise_identical(self):
        # before the prune (12), and after it (the dead channels restored)
        for kill_at in (8, 14):
            with self.subTest(kill_at=kill_at):
                self._assert_resume_is_bitwise_identical(
                    self.HOOK, kill_at=kill_at)

    def test_explicit_exclude_and_no_coupling_detection(self):
        hook = dict(self.HOOK, exclude=[r'^stem\.'], exclude_coupled=False)
        runner = self._train(self._with_hook(hook), 'no_coupling')
        sp = next(h for h in runner.hooks
                  if isinstance(h, GRegHook)).sparsifier
        assert 'stem.weight' not in sp.params
        assert set(COUPLED) <= set(sp.params)


class TestGRegErrors(GRegRunnerCase):

    def test_bad_values(self):
        G, S = GaPConfigError, ScheduleError
        cases = [
            (dict(GREG1, granularity=-1e-4), S,
             'granularity must be a finite number > 0, but got -0.0001'),
            (dict(GREG1, granularity=0.5, upper_limit=0.1), S,
             r'upper_limit=0.1 is below granularity=0.5'),
            (dict(GREG1, mode='channel'), G, "mode must be one of "
             r"\('unstructured', 'filter'\), but got 'channel'"),
            (dict(GREG1, variant=3), S, r'variant must be one of \(1, 2\)'),
            (dict(GREG1, update_interval=0), S,
             'update_interval must be an int >= 1, but got 0'),
            (dict(GREG1, stabilize=-1), S,
             'stabilize must be an int >= 0, but got -1'),
            (dict(GREG2, upper_limit_pick=2.0), S,
             'upper_limit_pick=2.0 must be below upper_limit=1.0'),
            (dict(GREG2, granularity_pick=0.5, upper_limit_pick=0.1), S,
             'upper_limit_pick=0.1 is below granularity_pick=0.5'),
            (dict(GREG2, granularity_recover=0.1), S,
             'granularity_recover must be a finite number <= 0'),
            (dict(GREG1, mag_ratio_limit=0.5), G,
             'mag_ratio_limit must be a number > 1'),
            (dict(GREG1, mag_ratio_momentum=1.0), G,
             r'mag_ratio_momentum must be in \[0, 1\), but got 1.0'),
            (dict(GREG1, init='magnitude'), G, 'has no init option'),
            (dict(GREG1, pattern='2:4'), G, 'N:M pattern'),
            (dict(GREG1, mode='filter', distribution='global'), G,
             "mode='filter' takes distribution 'uniform' or 'erk'"),
            (dict(GREG1, stabilize=7), S,
             r'needs the prune at step 13 .* \+ 1 = 14 iterations, but '
             r'the training run has only 12'),
        ]
        for i, (hook, error, message) in enumerate(cases):
            with self.subTest(i=i, hook=hook):
                cfg = self._with_hook(hook)
                cfg.train_cfg = dict(by_epoch=False, max_iters=12)
                with self.assertRaisesRegex(error, message):
                    self._train(cfg, f'bad{i}')


# ------------------------------------------------------------- two ranks
def _greg_worker(rank, port, work_dir):
    result = {}
    for mode in ('unstructured', 'filter'):
        hook = dict(
            GREG2, mode=mode, sparsity=0.5, stabilize=1, mag_ratio_limit=5.0)
        runner = _toy_runner(
            rank, port, work_dir, f'greg_{mode}', [hook], max_iters=14)
        greg = runner.hooks[[isinstance(h, GRegHook)
                             for h in runner.hooks].index(True)]
        seen = []
        orig = greg.update

        def update(runner_, step, orig=orig, seen=seen, greg=greg):
            orig(runner_, step)
            seen.append((step, greg.phase, dict(greg.penalty.values),
                         dict(greg.mag_ratio), dict(greg.stopped_at)))

        greg.update = update
        runner.train()
        result[mode] = dict(_state(runner)[1], seen=seen)
    _finish(work_dir, 'greg', rank, result)


@pytest.mark.timeout(300)
def test_two_ranks_hold_identical_greg_state(tmp_path):
    mp.spawn(_greg_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    r0, r1 = _results(tmp_path, 'greg')
    for mode in ('unstructured', 'filter'):
        a, b = r0[mode], r1[mode]
        assert a['seen'] == b['seen'], mode
        assert a['seen'][-1][1] == 'finetune', mode
        for name, mask in a['masks'].items():
            if mode == 'filter' and name == 'head.weight':
                assert mask is None and b['masks'][name] is None  # 1 filter
                continue
            assert mask is not None, (mode, name)
            assert torch.equal(mask, b['masks'][name]), (mode, name)
        for key, value in a['params'].items():
            assert torch.equal(value, b['params'][key]), (mode, key)
