# Copyright (c) gap_mm contributors. All rights reserved.
"""GMP, RigL, SET and the random static mask on the shared engine."""
import copy
import os.path as osp
from unittest import mock

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from test_gap_hook import GaPRunnerCase, MaskInvariantHook

from gap_mm.engine import BaseSparsityHook, RigLHook
from gap_mm.errors import GaPConfigError
from gap_mm.schedules import ScheduleError
from gap_mm.sparsity import num_kept, topk_masks
from gap_mm.testing.hooks import KilledForTest


class EventLogHook(Hook):
    """Records the masks after every iteration (LOWEST: after the events)."""

    priority = 'LOWEST'

    def __init__(self):
        self.masks = []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        hook = next(h for h in runner.hooks if isinstance(h, BaseSparsityHook))
        sp = hook.sparsifier
        self.masks.append({n: sp.keep_mask(n) for n in sp.names})


class RecordingRigLHook(RigLHook):
    """RigL that also keeps, for each update, what it decided from: the
    masks, weights and dense gradients just before it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.records = []

    def grow_scores(self, runner, step):
        scores = super().grow_scores(runner, step)
        sp = self.sparsifier
        self.records.append(
            dict(
                step=step,
                fraction=self.schedule.fraction_at(step),
                pruned={n: sp.pruned_mask(n).clone()
                        for n in scores},
                weights={n: sp.params[n].detach().clone()
                         for n in scores},
                grads={
                    n: g.clone()
                    for n, g in scores.items()
                }))
        return scores

    def update(self, runner, step):
        super().update(runner, step)
        if self.records and self.records[-1]['step'] == step:
            sp = self.sparsifier
            self.records[-1]['after'] = {
                n: sp.pruned_mask(n).clone()
                for n in self.records[-1]['pruned']
            }


def _direct_drop_grow(pruned, weight, grad, k):
    """RigL's update computed directly with sorts (the reference)."""
    flat_p, w, g = pruned.reshape(-1), weight.reshape(-1), grad.reshape(-1)
    active = (~flat_p).nonzero().squeeze(1)
    # drop: the k active weights of smallest |w| (ties: lower index first
    # survives, so the highest index among equal values is dropped)
    order = sorted(active.tolist(), key=lambda i: (-abs(float(w[i])), i))
    kept = set(order[:len(order) - k])
    inactive = [i for i in range(flat_p.numel()) if i not in kept]
    grown = sorted(inactive, key=lambda i: (-abs(float(g[i])), i))[:k]
    new = torch.ones_like(flat_p)
    new[list(kept | set(grown))] = False
    return new.view_as(pruned), set(grown)


class BaselineRunnerCase(GaPRunnerCase):

    def setUp(self):
        super().setUp()
        HOOKS.register_module(module=EventLogHook, force=True)
        HOOKS.register_module(module=RecordingRigLHook, force=True)
        self.cfg.optim_wrapper = dict(
            type='GaPOptimWrapper',
            optimizer=dict(type='AdamW', lr=0.01, weight_decay=0.05))

    def _with_hook(self, hook):
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks = [
            hook,
            dict(type='MaskInvariantHook'),
            dict(type='EventLogHook')
        ]
        return cfg

    def _log(self, runner, kind=EventLogHook):
        return next(h for h in runner.hooks if isinstance(h, kind))

    def _assert_resume_is_bitwise_identical(self, hook, kill_at=8):
        straight = self._train(self._with_hook(hook), 'straight')
        cfg = self._with_hook(hook)
        cfg.custom_hooks.append(
            dict(type='KillAfterIterHook', iteration=kill_at))
        with self.assertRaises(KilledForTest):
            self._train(cfg, 'first_half')
        cfg = self._with_hook(hook)
        cfg.resume = True
        cfg.load_from = osp.join(self.temp_dir.name, 'first_half',
                                 f'iter_{kill_at}.pth')
        resumed = self._train(cfg, 'resumed')
        log_a, log_b = self._log(straight), self._log(resumed)
        for name, keep in log_a.masks[-1].items():
            other = log_b.masks[-1][name]
            if keep is None:  # a layer left dense
                self.assertIsNone(other, name)
                continue
            self.assertTrue(torch.equal(keep, other), name)
        sa, sb = straight.model.state_dict(), resumed.model.state_dict()
        for key in sa:
            self.assertTrue(torch.equal(sa[key], sb[key]), key)


class TestGMPHook(BaselineRunnerCase):
    # 16 iterations: prunes at 2 (initial 0: stays dense), 6 and 10
    HOOK = dict(type='GMPHook', sparsity=0.75, begin=2, end=10, interval=4)

    def test_cubic_ramp_exact_counts(self):
        runner = self._train(self._with_hook(self.HOOK), 'gmp')
        log = self._log(runner)
        # masks of step t+1 are recorded after iteration t
        expected = {6: 0.75 - 0.75 * (1 - 4 / 8)**3, 10: 0.75}
        numels = {n: p.numel() for n, p in runner.model.named_parameters()}
        for step, masks in enumerate(log.masks, start=1):
            if step < 6:
                self.assertTrue(all(m is None for m in masks.values()), step)
                continue
            target = expected[6] if step < 10 else expected[10]
            for name, keep in masks.items():
                self.assertEqual(
                    int(keep.sum()), num_kept(numels[name], target),
                    (step, name))
        check = self._log(runner, MaskInvariantHook)
        self.assertEqual(check.prunes, 2 * 4)  # 4 layers at 6 and at 10
        self.assertEqual(check.grows, 0)
        # pruned weights stay pruned
        for name in log.masks[-1]:
            self.assertFalse((log.masks[-1][name] & ~log.masks[6][name]).any())

    def test_resume_is_bitwise_identical(self):
        self._assert_resume_is_bitwise_identical(self.HOOK)


class TestRigLHook(BaselineRunnerCase):
    # updates at 4, 8, 12 (every 4 until 12), cosine decay from 0.5
    HOOK = dict(
        type='RecordingRigLHook',
        sparsity=0.75,
        interval=4,
        end=12,
        drop_fraction=0.5)

    def test_grows_the_top_dense_gradients_exactly(self):
        calls = []
        cfg = self._with_hook(self.HOOK)
        cfg.work_dir = osp.join(self.temp_dir.name, 'rigl')
        runner = self.build_runner(cfg)
        runner.model.register_forward_hook(lambda *a: calls.append(1))
        runner.train()
        # one forward (and so one backward) per iteration: reading the
        # dense gradient costs no second pass
        self.assertEqual(len(calls), 16)
        hook = next(h for h in runner.hooks if isinstance(h, RigLHook))
        self.assertEqual([r['step'] for r in hook.records], [4, 8, 12])
        moved_any = False
        for rec in hook.records:
            for name, pruned in rec['pruned'].items():
                grad = rec['grads'][name]
                # the gradient was read before the wrapper masked it
                self.assertTrue((grad[pruned] != 0).any(), name)
                n_active = int((~pruned).sum())
                k = min(
                    int(round(rec['fraction'] * n_active)), n_active,
                    int(pruned.sum()))
                expected, grown = _direct_drop_grow(pruned,
                                                    rec['weights'][name], grad,
                                                    k)
                self.assertTrue(
                    torch.equal(rec['after'][name], expected),
                    (rec['step'], name))
                # exact count, every layer
                self.assertEqual(
                    int((~rec['after'][name]).sum()), n_active, name)
                moved_any |= bool(grown - set(
                    (~pruned).reshape(-1).nonzero().flatten().tolist()))
        self.assertTrue(moved_any, 'no update grew a new connection')
        check = self._log(runner, MaskInvariantHook)
        self.assertGreater(check.grows, 0)
        self.assertGreater(check.prunes, 4)  # the initial 4 layers, then

    def test_resume_is_bitwise_identical(self):
        self._assert_resume_is_bitwise_identical(self.HOOK)

    def test_load_from_starts_another_method_afresh(self):
        """``load_from`` a RigL checkpoint into a C-GaP run: the weights are
        loaded, C-GaP chooses its masks afresh from them (no "other
        partitions" error), and the log says the saved state was not
        restored; only --resume reads it."""
        rigl = self._train(self._with_hook(self.HOOK), 'rigl')
        ckpt = osp.join(self.temp_dir.name, 'rigl', 'iter_16.pth')
        self.assertIn('gap_state', torch.load(ckpt, weights_only=True))
        cfg = copy.deepcopy(self.cfg)
        cfg.load_from = ckpt
        cfg.train_cfg = dict(by_epoch=False, max_iters=1)
        cfg.custom_hooks[0]['schedule'] = dict(type='static')
        cfg.experiment_name = 'gap_from_rigl'
        cfg.work_dir = osp.join(self.temp_dir.name, 'gap_from_rigl')
        runner = self.build_runner(cfg)
        gap, _ = self._hooks(runner)
        with mock.patch('gap_mm.engine.hooks.base_method_hook.print_log'
                        ) as log:
            runner.load_or_resume()
        self.assertTrue(
            any('load_from loads the weights only' in call.args[0]
                for call in log.call_args_list), log.call_args_list)
        self.assertIsNone(gap._loaded_state)
        loaded = {k: v.clone() for k, v in runner.model.state_dict().items()}
        for key, value in rigl.model.state_dict().items():
            self.assertTrue(torch.equal(loaded[key], value), key)
        runner.train()
        # static C-GaP masks of the loaded weights: the largest 25% of each
        # layer's |w|, chosen afresh (RigL's masks are not restored)
        for name in gap.sparsifier.names:
            weight = loaded[name].abs().flatten()
            keep = gap.sparsifier.keep_mask(name).flatten()
            k = int(keep.sum())
            self.assertEqual(k, weight.numel() - round(0.75 * weight.numel()))
            self.assertGreaterEqual(weight[keep].min(), weight[~keep].max(),
                                    name)


class TestSETAndRandomStatic(BaselineRunnerCase):
    HOOK = dict(
        type='SETHook', sparsity=0.75, interval=4, end=12, drop_fraction=0.3)

    def test_random_growth_keeps_counts_and_changes_masks(self):
        runner = self._train(self._with_hook(self.HOOK), 'set')
        log = self._log(runner)
        numels = {n: p.numel() for n, p in runner.model.named_parameters()}
        for masks in log.masks:
            for name, keep in masks.items():
                self.assertEqual(
                    int(keep.sum()), num_kept(numels[name], 0.75), name)
        changed = [
            any(not torch.equal(a[n], b[n]) for n in a)
            for a, b in zip(log.masks, log.masks[1:])
        ]
        # masks change exactly at the updates for steps 4, 8 and 12
        self.assertEqual([i + 2 for i, c in enumerate(changed) if c],
                         [4, 8, 12])
        # the random growth is not the gradient's: a second seed grows
        # other weights
        cfg = self._with_hook(self.HOOK)
        cfg.randomness = dict(seed=1)
        other = self._log(self._train(cfg, 'set_seed1'))
        self.assertFalse(
            all(
                torch.equal(log.masks[-1][n], other.masks[-1][n])
                for n in log.masks[-1]))

    def test_resume_is_bitwise_identical(self):
        self._assert_resume_is_bitwise_identical(self.HOOK)

    def test_static_random_mask(self):
        hook = dict(
            type='GaPHook',
            sparsity=0.75,
            partitions=2,
            init='random',
            schedule=dict(type='static'))
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks = [hook, dict(type='MaskInvariantHook')]
        runner = self._train(cfg, 'static_random')
        gap, check = self._hooks(runner)
        self.assertEqual(check.grows, 0)
        self._check_final_counts(runner, 0.75)
        # the mask is not the magnitude of the initial weights
        cfg.custom_hooks[0] = dict(hook, init='magnitude')
        magnitude, _ = self._hooks(self._train(cfg, 'static_magnitude'))
        name = gap.sparsifier.names[1]
        self.assertFalse(
            torch.equal(
                gap.sparsifier.keep_mask(name),
                magnitude.sparsifier.keep_mask(name)))


class TestBaselineErrors(BaselineRunnerCase):

    def test_bad_values(self):
        G, S = GaPConfigError, ScheduleError
        gmp = dict(type='GMPHook', sparsity=0.75, end=10)
        rigl = dict(type='RigLHook', sparsity=0.75, end=10)
        cases = [
            (dict(gmp, end=None), G, 'GMPHook needs end='),
            (dict(gmp, end=16), S, r'The schedule needs end 16 \+ 1 = 17 '
             r'iterations, but the training run has only 16'),
            (dict(gmp, begin=10), S, 'the cubic ramp needs begin < end, '
             'but got begin=10, end=10'),
            (dict(gmp, interval=0), S, 'interval must be an int >= 1, but '
             'got 0'),
            (dict(gmp, initial_sparsity=0.9), G,
             'initial_sparsity=0.9 is above the target sparsity 0.75'),
            (dict(gmp, pattern='2:4'), G,
             "GMPHook works on unstructured masks; the N:M pattern '2:4'"),
            (dict(rigl, drop_fraction=1.0), S,
             r'drop_fraction must be in \(0, 1\), but got 1.0'),
            (dict(rigl, drop_fraction=0), S,
             r'drop_fraction must be in \(0, 1\), but got 0'),
            (dict(rigl, interval=0), S, 'interval must be an int >= 1'),
            (dict(rigl, decay='linear'), S, "decay must be one of "
             r"\('cosine', 'constant'\), but got 'linear'"),
            (dict(rigl, end=None), G, 'RigLHook needs end='),
            (dict(rigl, init='none'), G, "RigLHook starts sparse"),
            (dict(rigl, end=20), S, 'needs end 20 \\+ 1 = 21 iterations'),
            (dict(rigl, end=1.5), G, r'RigLHook end=1.5: a float is a '
             r'fraction of the run and must be in \(0, 1\]'),
            # end=1.0 is the run's end (15 of 16); an int end past it is not
            (dict(gmp, end=16), S, r'needs end 16 \+ 1 = 17 iterations'),
        ]
        for i, (hook, error, message) in enumerate(cases):
            with self.subTest(hook=hook):
                with self.assertRaisesRegex(error, message) as ctx:
                    self._train(self._with_hook(hook), f'bad{i}')
                self.assertIs(type(ctx.exception), error)

    def test_schedule_lengths_as_fractions_of_the_run(self):
        hook = dict(
            type='RigLHook', sparsity=0.75, end=0.75, interval=0.25, begin=0)
        runner = self._train(self._with_hook(hook), 'fractions')
        rigl = next(h for h in runner.hooks if isinstance(h, RigLHook))
        self.assertEqual((rigl.schedule.end, rigl.schedule.interval), (12, 4))

    def test_end_of_the_run_as_a_fraction(self):
        """``end=1.0``, inside the documented (0, 1], is the last step that
        a trained step follows: 15 of a 16-iteration run."""
        for hook in (dict(type='RigLHook', sparsity=0.75, end=1.0,
                          interval=4),
                     dict(type='GMPHook', sparsity=0.75, begin=0, end=1.0,
                          interval=4)):
            runner = self._train(self._with_hook(hook), hook['type'])
            method = next(h for h in runner.hooks
                          if isinstance(h, BaseSparsityHook))
            self.assertEqual(method.schedule.end, 15, hook['type'])

    def test_rigl_interval_must_fit_gradient_accumulation(self):
        cfg = self._with_hook(
            dict(type='RigLHook', sparsity=0.75, end=10, interval=3))
        cfg.optim_wrapper.accumulative_counts = 2
        with self.assertRaisesRegex(
                GaPConfigError, 'interval=3 must be a multiple of the '
                "optimizer wrapper's accumulative_counts=2"):
            self._train(cfg, 'accum')


def test_topk_reference_agrees_on_ties():
    # the reference's tie rule is topk_masks' (lower index survives)
    scores = torch.tensor([1., 2., 2., 0., 2.])
    assert topk_masks([scores],
                      2)[0].tolist() == [False, True, True, False, False]
