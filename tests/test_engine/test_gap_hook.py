# Copyright (c) gap_mm contributors. All rights reserved.
import copy
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.registry import DATASETS, HOOKS, MODELS
from mmengine.testing import RunnerTestCase

import gap_mm  # noqa: F401  (registers GaPHook and the wrappers)
from gap_mm.engine import BaseSparsityHook, GaPHook
from gap_mm.errors import GaPConfigError
from gap_mm.schedules import ScheduleError
from gap_mm.sparsity import SECOND_MOMENT_KEYS, num_kept, unpack_mask
from gap_mm.testing import GaPToyDataset, GaPToyModel
from gap_mm.testing.hooks import KilledForTest


class MaskInvariantHook(Hook):
    """Checks the sparse-training invariants after every train iteration,
    for any sparsity hook: masked weights and their optimizer state are 0;
    regrown positions start at weight 0, momentum 0 and Adam's second
    moment at the mean of the tensor's other positions."""

    priority = 'LOWEST'

    def __init__(self):
        self.steps = 0
        self.grows = 0  # layer-events that regrew positions
        self.prunes = 0  # layer-events that pruned positions
        self._prev = {}

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        self._check(runner)
        self.steps += 1

    def after_train_epoch(self, runner):
        self._check(runner)  # epoch schedules change masks here

    def _check(self, runner):
        hook = next(h for h in runner.hooks if isinstance(h, BaseSparsityHook))
        sp = hook.sparsifier
        optimizer = runner.optim_wrapper.optimizer
        current = {}
        for name, param in sp.params.items():
            keep = sp.keep_mask(name)
            prev = self._prev.get(name)  # None: dense before
            if prev is not None:
                grown = ~prev if keep is None else keep & ~prev
                if grown.any():
                    self.grows += 1
                    assert (param[grown] == 0).all(), name
                    self._assert_state_regrown(optimizer, param, grown, name)
            if keep is None:
                continue
            newly = ~keep if prev is None else ~keep & prev
            if newly.any():
                self.prunes += 1
            # masked weights are exactly 0 after every step
            assert (param[~keep] == 0).all(), name
            self._assert_state_zero(optimizer, param, ~keep, name)
            current[name] = keep.clone()
        self._prev = current

    @staticmethod
    def _assert_state_regrown(optimizer, param, where, name):
        # momentum and first moments 0; Adam's second moments at the mean
        # of the positions that stayed (regrown_second_moment='mean')
        for key, value in optimizer.state.get(param, {}).items():
            if torch.is_tensor(value) and value.shape == param.shape:
                expected = value[~where].mean() \
                    if key in SECOND_MOMENT_KEYS else 0
                assert (value[where] == expected).all(), (name, key)

    @staticmethod
    def _assert_state_zero(optimizer, param, where, name):
        for key, value in optimizer.state.get(param, {}).items():
            if torch.is_tensor(value) and value.shape == param.shape:
                assert (value[where] == 0).all(), (name, key)


class GaPRunnerCase(RunnerTestCase):
    """The toy GaP run (set-up and helpers) the test classes share."""

    def setUp(self):
        super().setUp()
        MODELS.register_module(module=GaPToyModel, force=True)
        DATASETS.register_module(module=GaPToyDataset, force=True)
        HOOKS.register_module(module=MaskInvariantHook, force=True)
        cfg = copy.deepcopy(self.iter_based_cfg)
        cfg.model = dict(type='GaPToyModel')
        cfg.train_dataloader.dataset = dict(type='GaPToyDataset')
        cfg.train_dataloader.batch_size = 4
        cfg.val_dataloader.dataset = dict(type='GaPToyDataset')
        cfg.test_dataloader.dataset = dict(type='GaPToyDataset')
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
        cfg.train_cfg = dict(by_epoch=False, max_iters=16)
        cfg.randomness = dict(seed=0)
        cfg.optim_wrapper = dict(
            type='GaPOptimWrapper',
            optimizer=dict(
                type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-2))
        cfg.default_hooks.checkpoint = dict(
            type='CheckpointHook', interval=8, by_epoch=False)
        # 4 prunable layers in 2 partitions; T=3, R=2: grow/prune events at
        # iterations 0, 3, 6, 9, fine-tune from 12 to 16.
        cfg.custom_hooks = [
            dict(
                type='GaPHook',
                sparsity=0.75,
                partitions=2,
                schedule=dict(type='cyclic', period=3, num_rounds=2)),
            dict(type='MaskInvariantHook')
        ]
        self.cfg = cfg

    def _hooks(self, runner):
        gap = next(h for h in runner.hooks if isinstance(h, GaPHook))
        check = next(
            h for h in runner.hooks if isinstance(h, MaskInvariantHook))
        return gap, check

    def _train(self, cfg, name):
        cfg = copy.deepcopy(cfg)
        cfg.experiment_name = name
        cfg.work_dir = osp.join(self.temp_dir.name, name)
        runner = self.build_runner(cfg)
        runner.train()
        return runner

    def _kill_and_resume(self, prefix=''):
        """Train straight, train again killed after iteration 8, resume
        that run from its ``iter_8.pth``; return the straight and the
        resumed runner and the checkpoint's path."""
        straight = self._train(self.cfg, f'{prefix}straight')
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks.append(dict(type='KillAfterIterHook', iteration=8))
        with self.assertRaises(KilledForTest):
            self._train(cfg, f'{prefix}first_half')
        ckpt_path = osp.join(self.temp_dir.name, f'{prefix}first_half',
                             'iter_8.pth')
        cfg = copy.deepcopy(self.cfg)
        cfg.resume = True
        cfg.load_from = ckpt_path
        return straight, self._train(cfg, f'{prefix}resumed'), ckpt_path

    def _assert_same_masks_and_weights(self, a, b):
        gap_a, _ = self._hooks(a)
        gap_b, _ = self._hooks(b)
        for name in gap_a.sparsifier.names:
            self.assertTrue(
                torch.equal(
                    gap_a.sparsifier.keep_mask(name),
                    gap_b.sparsifier.keep_mask(name)), name)
        sa, sb = a.model.state_dict(), b.model.state_dict()
        for key in sa:
            self.assertTrue(torch.equal(sa[key], sb[key]), key)

    def _check_final_counts(self, runner, sparsity):
        gap, _ = self._hooks(runner)
        for row in gap.sparsifier.layer_stats():
            assert not row['dense']
            assert row['kept'] == num_kept(row['numel'], sparsity), row
            weight = gap.sparsifier.params[row['name']]
            assert int((weight != 0).sum()) <= row['kept']


class TestGaPHook(GaPRunnerCase):

    def test_sgd_momentum_weight_decay_invariants(self):
        runner = self._train(self.cfg, 'sgd')
        gap, check = self._hooks(runner)
        self.assertEqual(check.steps, 16)
        # Partitions of 2 layers are grown at iterations 0, 3, 6 and 9; the
        # first grow precedes the first step, so 3 x 2 layer-grows are seen.
        self.assertEqual(check.grows, 6)
        # p1's layers are sparse at the first check, then every event at
        # iterations 3, 6, 9, 12 prunes a partition of 2 layers
        self.assertEqual(check.prunes, 2 + 4 * 2)
        self._check_final_counts(runner, 0.75)
        hub = runner.message_hub
        self.assertAlmostEqual(
            hub.get_scalar('train/gap_sparsity').current(),
            gap.sparsifier.summarize(gap.sparsifier.layer_stats(),
                                     2)['sparsity'])
        self.assertEqual(
            hub.get_scalar('train/gap_dense_partition').current(), -1)
        self.assertIn('train/gap_sparsity_p1', hub.log_scalars)

    def test_adamw_invariants(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.optim_wrapper = dict(
            type='GaPOptimWrapper',
            optimizer=dict(type='AdamW', lr=0.01, weight_decay=0.05))
        runner = self._train(cfg, 'adamw')
        _, check = self._hooks(runner)
        self.assertEqual((check.steps, check.grows, check.prunes), (16, 6, 10))
        self._check_final_counts(runner, 0.75)

    def test_gradient_accumulation(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.optim_wrapper.accumulative_counts = 2
        runner = self._train(cfg, 'accum')
        _, check = self._hooks(runner)
        self.assertEqual(check.steps, 16)
        self._check_final_counts(runner, 0.75)

    def test_epoch_schedule_and_static_baseline(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.train_dataloader.sampler = dict(
            type='DefaultSampler', shuffle=True)
        cfg.train_cfg = dict(by_epoch=True, max_epochs=5)
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
        cfg.custom_hooks[0]['schedule'] = dict(
            type='cyclic', period=1, num_rounds=2, by_epoch=True)
        runner = self._train(cfg, 'epochs')
        gap, check = self._hooks(runner)
        self.assertEqual(check.grows, 6)  # grows at epochs 1, 2, 3
        self._check_final_counts(runner, 0.75)
        ckpt = torch.load(
            osp.join(runner.work_dir, 'epoch_2.pth'), weights_only=False)
        state = ckpt['gap_state']
        self.assertEqual((state['step'], state['dense_partitions']), (2, [0]))

        cfg.custom_hooks[0]['schedule'] = dict(type='static')
        runner = self._train(cfg, 'static')
        gap, check = self._hooks(runner)
        self.assertEqual(check.grows, 0)
        self._check_final_counts(runner, 0.75)

    def test_resume_is_bitwise_identical(self):
        straight, resumed, ckpt_path = self._kill_and_resume()
        ckpt = torch.load(ckpt_path, weights_only=True)
        state = ckpt['gap_state']
        # iteration 8 is in round 1 with partition 0 dense
        self.assertEqual((state['step'], state['dense_partitions']), (8, [0]))
        for name, entry in state['sparsifier']['masks'].items():
            keep = unpack_mask(entry, name)
            # weights in the plain state_dict are already zero where masked
            self.assertTrue((ckpt['state_dict'][name][~keep] == 0).all())
            self.assertLessEqual(entry['packed'].numel() * 8, keep.numel() + 7)
        self._assert_same_masks_and_weights(straight, resumed)

    def test_bad_configs(self):
        G, S = GaPConfigError, ScheduleError
        cases = [
            (dict(sparsity=1.0), G, r'sparsity must be in \[0, 1\)'),
            (dict(pattern='4:2'), G, r'0 < N < M'),
            (dict(partitions=5), G,
             'partitions=5 is more than the 4 prunable layers'),
            (dict(exclude=[r'^backbone\.stem']), G,
             r"exclude regex '\^backbone\\\\.stem' matches no prunable"),
            (dict(partitions=[r'^conv|^fc1', r'^neck']), G,
             "partition 1 '\\^neck' matches no prunable layer"),
            (dict(partitions=['(a', '^fc']), G,
             r"partitions\[0\] regex '\(a' is not a valid regular "
             r'expression: missing \), unterminated subpattern'),
            (dict(overrides={'(fc': 0.5}), G,
             r"overrides regex '\(fc' is not a valid regular expression"),
            (dict(include=['[fc']), G,
             r"include regex '\[fc' is not a valid regular expression"),
            (dict(schedule=dict(type='cyclic', period=4, num_rounds=2)), S,
             r'\(K 2 x R 2 x T 4 = 16 iterations\) leaves no '
             r'fine-tune in a run of 16 iterations'),
            (dict(
                schedule=dict(
                    type='cyclic', period=4, num_rounds=2, finetune=4)), S,
             r'needs K 2 x R 2 x T 4 \+ finetune 4 = 20 iterations, but the'
             r' training run has only 16'),
            (dict(
                schedule=dict(
                    type='cyclic', period=1, num_rounds=1, by_epoch=True)), G,
             r'epoch-based schedule \(by_epoch=True\), but the run is '
             r'iteration-based \(train_cfg max_iters=16\)'),
            (dict(schedule=dict(type='linear')), S,
             "unknown schedule type 'linear'"),
            (dict(module_types=['Conv9d']), G,
             "module_types entry 'Conv9d' is not a layer type"),
            (dict(regrown_second_moment='one'), G,
             r"regrown_second_moment must be one of \('mean', 'zero'\), "
             "but got 'one'"),
            (dict(init='dense'), G,
             r"init must be one of \('magnitude', 'random', 'none'\), but "
             "got 'dense'"),
            (dict(sparsifier=dict(type='NoSuchSparsifier')), G,
             "unknown sparsifier type 'NoSuchSparsifier'"),
            # an emptied layer: ERK is advised only where it is not set
            (dict(sparsity=0.99999, distribution='uniform'), G,
             r"would prune every weight of .* To keep them: use "
             r"distribution='erk'"),
            (dict(sparsity=0.99999, distribution='erk'), G,
             r"distribution 'erk' would prune every weight of .*\. To keep "
             r"them: lower the sparsity, exclude these layers or give them "
             r"overrides\.$"),
        ]
        for i, (override, error, message) in enumerate(cases):
            with self.subTest(override=override):
                cfg = copy.deepcopy(self.cfg)
                cfg.custom_hooks[0].update(override)
                with self.assertRaisesRegex(error, message) as ctx:
                    self._train(cfg, f'bad{i}')
                # the exact class: a schedule error is a ScheduleError,
                # every other bad setting a plain GaPConfigError
                self.assertIs(type(ctx.exception), error)

    def test_requires_gap_optim_wrapper(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.optim_wrapper = dict(
            type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))
        with self.assertRaisesRegex(
                GaPConfigError, "optim_wrapper=dict\\(type='GaPOptimWrapper'.*"
                'but got OptimWrapper'):
            self._train(cfg, 'plain_wrapper')


class SparseAtValHook(Hook):
    """Checks, after EMAHook has swapped the averaged weights in, that the
    model validated is zero wherever the masks prune."""

    priority = 'LOW'

    def __init__(self):
        self.checked = 0

    def before_val_epoch(self, runner):
        gap = next(h for h in runner.hooks if isinstance(h, GaPHook))
        for name, param in gap.sparsifier.params.items():
            keep = gap.sparsifier.keep_mask(name)
            if keep is not None:
                assert (param[~keep] == 0).all(), name
        self.checked += 1


class TestGaPHookWithEMA(GaPRunnerCase):
    """GaP with mmengine's EMAHook: validation and checkpoints see the
    averaged weights, which must be exactly as sparse as the model."""

    def setUp(self):
        super().setUp()
        HOOKS.register_module(module=SparseAtValHook, force=True)
        cfg = self.cfg
        cfg.val_dataloader = dict(
            dataset=dict(type='GaPToyDataset'),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=4,
            num_workers=0)
        cfg.val_evaluator = [dict(type='ToyMetric')]
        cfg.val_cfg = dict()
        # validation at 4, 8, 12, 16: inside rounds and in the fine-tune
        cfg.train_cfg = dict(by_epoch=False, max_iters=16, val_interval=4)
        # momentum 0.5 (the weight of the new value): an unmasked average
        # would take many steps to decay at a newly pruned position
        cfg.custom_hooks.insert(1, dict(type='EMAHook', momentum=0.5))
        cfg.custom_hooks.append(dict(type='SparseAtValHook'))

    def test_validation_and_checkpoints_are_sparse(self):
        runner = self._train(self.cfg, 'ema')
        check = next(h for h in runner.hooks if isinstance(h, SparseAtValHook))
        self.assertEqual(check.checked, 4)
        ema = next(h for h in runner.hooks if type(h).__name__ == 'EMAHook')
        gap, _ = self._hooks(runner)
        for iteration in (8, 16):
            ckpt = torch.load(
                osp.join(runner.work_dir, f'iter_{iteration}.pth'),
                weights_only=True)
            masks = ckpt['gap_state']['sparsifier']['masks']
            self.assertTrue(masks)
            for name, entry in masks.items():
                keep = unpack_mask(entry, name)
                # EMAHook saves the averaged weights as the state_dict ...
                self.assertTrue((ckpt['state_dict'][name][~keep] == 0).all(),
                                (iteration, name))
                # ... and the averaged model itself
                averaged = ckpt['ema_state_dict'][f'module.{name}']
                self.assertTrue((averaged[~keep] == 0).all(),
                                (iteration, name))
        # the EMA differs from the model, so the test is not vacuous
        name = gap.sparsifier.names[0]
        self.assertFalse(
            torch.equal(
                ema.ema_model.module.get_parameter(name),
                gap.sparsifier.params[name]))

    def test_resume_is_bitwise_identical(self):
        TestGaPHook.test_resume_is_bitwise_identical(self)


class TestGaPVariablesUnderAnyLauncher(GaPRunnerCase):
    """``--cfg-options gap_sparsity=...`` merged the way mmdet's own
    ``tools/train.py`` and ``mim train`` merge it (``merge_from_dict`` on
    the config read from its file, no gap_mm code involved) reaches
    GaPHook, or stops with the fix."""

    def _from_file(self, hook_sparsity=None):
        from mmengine.config import Config
        cfg = copy.deepcopy(self.cfg)
        cfg.gap_sparsity = 0.5
        cfg.custom_hooks[0].pop('sparsity')
        if hook_sparsity is not None:
            cfg.custom_hooks[0]['sparsity'] = hook_sparsity
        path = osp.join(self.temp_dir.name, f'cfg_{hook_sparsity}.py')
        cfg.dump(path)
        cfg = Config.fromfile(path)
        cfg.merge_from_dict({'gap_sparsity': 0.25})
        cfg.work_dir = osp.join(self.temp_dir.name, f'wd_{hook_sparsity}')
        return cfg

    def test_variable_reaches_a_hook_that_does_not_set_it(self):
        from mmengine.runner import Runner
        runner = Runner.from_cfg(self._from_file())
        runner.train()
        gap, _ = self._hooks(runner)
        self.assertEqual(gap.sparsity, 0.25)
        self._check_final_counts(runner, 0.25)

    def test_variable_that_cannot_reach_an_explicit_option_stops(self):
        from mmengine.runner import Runner
        runner = Runner.from_cfg(self._from_file(hook_sparsity=0.5))
        with self.assertRaisesRegex(
                GaPConfigError, r'gap_sparsity=0.25 was set after the config '
                r'was read, but GaPHook is given sparsity=0.5 explicitly'):
            runner.train()


class GaPToyAttnModel(GaPToyModel):
    """A frozen Conv1d stem, an ``nn.MultiheadAttention`` over the 8
    positions (packed q, k, v), a ConvTranspose1d and a linear head: 4
    prunable layers (in_proj_weight of 3 blocks, out_proj, the transposed
    conv, the head) and one frozen."""

    def __init__(self, data_preprocessor=None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        del self.fc1, self.bn, self.fc2, self.head
        self.conv.requires_grad_(False)
        self.attn = torch.nn.MultiheadAttention(8, 2)
        self.up = torch.nn.ConvTranspose1d(8, 4, 2, stride=2)
        self.head = torch.nn.Linear(64, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if isinstance(inputs, (list, tuple)):
            inputs = torch.stack(inputs)
        if isinstance(data_samples, (list, tuple)):
            data_samples = torch.stack(data_samples)
        x = torch.relu(self.conv(inputs.unsqueeze(1)))  # (B, 8, 8)
        seq = x.permute(2, 0, 1)  # (L, B, E)
        seq = seq + self.attn(seq, seq, seq, need_weights=False)[0]
        x = torch.relu(self.up(seq.permute(1, 2, 0)))  # (B, 4, 16)
        out = self.head(x.flatten(1)).squeeze(1)
        if mode == 'loss':
            return dict(loss=((out - data_samples)**2).mean())
        return out


class TestGaPHookAttentionAndTransposedConv(GaPRunnerCase):
    """GaP on attention projections (q, k, v each at its own count) and a
    transposed conv, with a frozen stem left out."""

    def setUp(self):
        super().setUp()
        MODELS.register_module(module=GaPToyAttnModel, force=True)
        self.cfg.model = dict(type='GaPToyAttnModel')

    def _check_blocks(self, runner, sparsity):
        gap, _ = self._hooks(runner)
        sp = gap.sparsifier
        self.assertEqual(sp.names, [
            'attn.in_proj_weight', 'attn.out_proj.weight', 'up.weight',
            'head.weight'
        ])
        self.assertEqual(list(gap.selection.frozen), ['conv.weight'])
        keep = sp.keep_mask('attn.in_proj_weight')
        self.assertEqual([int(b.sum()) for b in keep.chunk(3)],
                         [num_kept(64, sparsity)] * 3)
        for name in sp.names[1:]:
            self.assertEqual(
                int(sp.keep_mask(name).sum()),
                num_kept(sp.params[name].numel(), sparsity), name)
        # the frozen stem was never pruned
        self.assertTrue((runner.model.conv.weight != 0).all())

    def test_masks_invariants_and_exact_counts(self):
        runner = self._train(self.cfg, 'attn')
        _, check = self._hooks(runner)
        self.assertEqual(check.steps, 16)
        self.assertGreater(check.grows, 0)
        self._check_blocks(runner, 0.75)
        gap, _ = self._hooks(runner)
        table = gap.start_table(runner)
        self.assertIn('[0:8]', table)
        self.assertIn('[16:24]', table)
        self.assertIn(
            'Partitions: 0: 1 layer, 192 weights (50.0%); 1: 3 layers, '
            '192 weights (50.0%)', table)
        self.assertIn('Left dense, 1 frozen weight (24 values', table)
        self.assertIn('conv.weight (24)', table)

    def test_resume_is_bitwise_identical(self):
        straight, resumed, _ = self._kill_and_resume('attn_')
        gap_a, _ = self._hooks(straight)
        gap_b, _ = self._hooks(resumed)
        self.assertEqual(gap_a.sparsifier.block_keep,
                         gap_b.sparsifier.block_keep)
        self._assert_same_masks_and_weights(straight, resumed)
        self._check_blocks(resumed, 0.75)

    def test_erk_and_set(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks[0] = dict(
            type='SETHook',
            sparsity=0.75,
            distribution='erk',
            interval=2,
            end=12,
            drop_fraction=0.5)
        runner = self._train(cfg, 'attn_set')
        hook = next(h for h in runner.hooks if isinstance(h, BaseSparsityHook))
        sp = hook.sparsifier
        keep = sp.keep_mask('attn.in_proj_weight')
        # every drop-and-grow kept each projection's ERK count
        self.assertEqual([int(b.sum()) for b in keep.chunk(3)],
                         sp.block_keep['attn.in_proj_weight'])
        self.assertEqual(len(set(sp.block_keep['attn.in_proj_weight'])), 1)
