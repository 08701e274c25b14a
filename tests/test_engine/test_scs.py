# Copyright (c) gap_mm contributors. All rights reserved.
"""SCS: gates, their FLOPs, the schedule, SCSModel and SCSHook on a
Runner (beta, lambda, the freeze, exact resume)."""
import copy
import math
import os
import os.path as osp
import re

import pytest
import torch
import torch.multiprocessing as mp
from mmdet.models.backbones.resnet import BasicBlock
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, MODELS, init_default_scope
from test_distributed import WORLD, _finish, _results
from test_gap_hook import GaPRunnerCase
from torch import nn

import gap_mm  # noqa: F401
from gap_mm.analysis.flops import module_flops
from gap_mm.engine import SCSHook
from gap_mm.errors import GaPConfigError
from gap_mm.export.slim import apply_slimming, plan_slimming
from gap_mm.schedules import ScheduleError, SCSSchedule, next_lambda
from gap_mm.sparsity import channel_followers
from gap_mm.sparsity.gates import (GateSet, gated_flops, landing_floor,
                                   landing_structure)
from gap_mm.testing import GaPToyDataset
from gap_mm.testing.e2e import free_port
from gap_mm.testing.hooks import KilledForTest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_GAP = osp.join(ROOT, 'configs', 'gap',
                    'cgap_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py')


class SCSToyNet(BaseModel):
    """stem conv-bn-relu -> mmdet BasicBlock (gated block, gated conv1
    channels) -> linear, on the toy data's 8 features as a 2x2x2 image."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(2, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
            nn.ReLU())
        self.block = BasicBlock(8, 8)
        self.fc = nn.Linear(32, 1)

    def _forward(self, x):
        return self.fc(self.block(self.stem(x)).flatten(1)).squeeze(1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if isinstance(inputs, (list, tuple)):
            inputs = torch.stack(inputs)
        if isinstance(data_samples, (list, tuple)):
            data_samples = torch.stack(data_samples)
        out = self._forward(inputs.view(-1, 2, 2, 2))
        if mode == 'loss':
            return dict(loss=((out - data_samples)**2).mean())
        return out


class SCSToyNetFrozenConv2(SCSToyNet):
    """The toy net with the gated channels' consumer frozen, as mmdet's
    ``frozen_stages`` freezes a stage."""

    def __init__(self):
        super().__init__()
        self.block.conv2.weight.requires_grad_(False)


def _toy_scs(**kwargs):
    MODELS.register_module(module=SCSToyNet, force=True)
    cfg = dict(
        type='SCSModel',
        architecture=dict(type='SCSToyNet'),
        flops_input_shape=(2, 2, 2))
    cfg.update(kwargs)
    return MODELS.build(cfg)


# ------------------------------------------------------------ pure parts
def test_gate_sites_of_a_block():
    model = _toy_scs()
    assert list(model.gates.channel_sites) == ['block.conv1']
    # the gate sits after bn1 (before the ReLU); the block gate after bn2
    assert model.gates.channel_sites['block.conv1'] == ('block.bn1', 8)
    assert model.gates.block_sites == {'block': 'block.bn2'}


def test_samples_depend_on_seed_and_step_only():
    a, b = _toy_scs(init_logit=0.01), _toy_scs(init_logit=0.01)
    for gates in (a.gates, b.gates):
        gates.resample(seed=3, step=7)
    sa = [g.sample.clone() for g in a.gates.gates().values()]
    sb = [g.sample.clone() for g in b.gates.gates().values()]
    assert all(torch.equal(x, y) for x, y in zip(sa, sb))
    a.gates.resample(seed=3, step=8)
    assert not all(
        torch.equal(x, g.sample) for x, g in zip(sa,
                                                 a.gates.gates().values()))
    # p ~ 1/2 at logit 0.01: both values occur among 8 channels
    assert 0 < float(sa[0].sum()) < 8


def test_seed_width_starts_a_seed_network():
    # growing mode: ceil(0.3 * 8) = 3 channels on, the block on
    grow = _toy_scs(init_logit=-2.0, seed_width=0.3)
    logits = grow.gates.gates()['block.conv1'].logits.detach()
    assert logits.tolist() == [2.0] * 3 + [-2.0] * 5
    assert grow.gates.gates()['block'].logits.item() == 2.0
    near = _toy_scs(seed_width=0.3, seed_off_logit=-0.1)
    assert near.gates.gates()['block.conv1'].logits.detach().tolist() == \
        pytest.approx([1.0] * 3 + [-0.1] * 5)
    # its hard FLOPs are those of the same structure set by hand
    full = _toy_scs()
    with torch.no_grad():
        full.gates.gates()['block.conv1'].logits.copy_(logits)
    ratio = float(grow.flops_ratio(hard=True))
    assert ratio == float(full.flops_ratio(hard=True)) and 0 < ratio < 1
    # exact where the fraction hits a whole number (0.375 * 8 = 3), and on
    # the float products that miss it (0.07 * 100 = 7.000000000000001)
    assert _toy_scs(seed_width=0.375).gates.gates()['block.conv1'].hard(
    ).sum() == 3
    assert GateSet({'a': ('a', 100)}, {}, seed_width=0.07).gates()['a'].hard(
    ).sum() == 7
    # at least one channel of every layer, whatever the fraction
    assert _toy_scs(seed_width=0.01).gates.gates()['block.conv1'].hard(
    ).tolist() == [1.0] + [0.0] * 7


def test_silencing_the_channels_outside_the_seed():
    model = _toy_scs(seed_width=0.25)
    arch = model.architecture
    conv2 = arch.block.conv2
    weight = conv2.weight.detach().clone()
    bn1 = (arch.block.bn1.weight.detach().clone(),
           arch.block.bn1.bias.detach().clone())
    x = torch.randn(4, 2, 2, 2)
    model.train()
    gates = model.gates.gates()
    for gate in gates.values():
        gate.sample.fill_(1.0)
    changed = model.gates.silence_off_channels_(arch)
    # the consumer's input slices of the 6 channels outside the seed
    assert list(changed) == ['block.conv2.weight']
    param, mask = changed['block.conv2.weight']
    assert param is conv2.weight and mask.shape == conv2.weight.shape
    assert mask[:, 2:].all() and not mask[:, :2].any()
    assert (conv2.weight[:, 2:] == 0).all()
    assert torch.equal(conv2.weight[:, :2], weight[:, :2])
    # the channels themselves are untouched: they still compute
    assert torch.equal(arch.block.bn1.weight, bn1[0])
    assert torch.equal(arch.block.bn1.bias, bn1[1])
    # the function no longer depends on their draws ...
    on = arch._forward(x)
    gates['block.conv1'].sample[2:] = 0
    assert torch.equal(arch._forward(x), on)
    # ... and drawn on, they learn: the consumer's slices, then the
    # channels' own norm and logits (nothing reaches them through a slice
    # that is still 0)
    gates['block.conv1'].sample.fill_(1.0)
    arch._forward(x).sum().backward()
    assert (conv2.weight.grad[:, 2:].abs().sum((0, 2, 3)) > 0).all()
    assert gates['block.conv1'].logits.grad[2:].abs().max() == 0
    with torch.no_grad():
        conv2.weight -= 0.1 * conv2.weight.grad
    model.zero_grad()
    arch._forward(x).sum().backward()
    assert (gates['block.conv1'].logits.grad[2:] != 0).all()
    assert (arch.block.bn1.weight.grad[2:] != 0).all()


def test_seed_width_errors():
    for bad in (0, 1, 1.5, True, '0.5'):
        with pytest.raises(
                GaPConfigError,
                match=r'seed_width must be in \(0, 1\) .* got ' +
                re.escape(repr(bad))):
            _toy_scs(seed_width=bad)
    for width in (0.5, None):  # growing and pruning mode
        for bad in (0, 0.0, True, '1', float('nan'), float('inf')):
            with pytest.raises(
                    GaPConfigError,
                    match=r'init_logit must be a finite number != 0 .* got '
                    + re.escape(repr(bad))):
                _toy_scs(seed_width=width, init_logit=bad)
    with pytest.raises(GaPConfigError, match='seed_width needs init != 0'):
        GateSet({'a': ('a', 4)}, {}, init=0.0, seed_width=0.5)
    for width, off in ((0.5, 0.1), (0.5, 0), (None, -0.1), (0.5, True)):
        with pytest.raises(
                GaPConfigError,
                match=r'seed_off_logit must be a number < 0 and goes with '
                rf'seed_width .* got seed_off_logit={off!r} with seed_width='
                rf'{width!r}'):
            _toy_scs(seed_width=width, seed_off_logit=off)


def test_gates_in_training_and_in_evaluation():
    model = _toy_scs()
    gate = model.gates.gates()['block.conv1']
    with torch.no_grad():
        gate.logits.copy_(torch.tensor([2., -1, 3, -2, 1, 1, -3, 1]))
    x = torch.randn(4, 2, 2, 2)
    seen = {}

    def capture(module, args, output):
        seen['relu_in'] = output.detach().clone()

    handle = model.architecture.block.bn1.register_forward_hook(capture)
    model.eval()
    model.architecture._forward(x)
    off = gate.logits < 0
    assert (seen['relu_in'][:, off] == 0).all()  # 1[s > 0]
    assert (seen['relu_in'][:, ~off] != 0).any()
    model.train()
    model.gates.set_beta(2.0)
    model.gates.resample(0, 0)
    model.architecture._forward(x)
    handle.remove()
    model.gates.detach()  # the ungated norm output, for the reference
    bn_out = model.architecture.block.bn1(
        model.architecture.block.conv1(model.architecture.stem(x)))
    model.gates.attach(model.architecture)
    # q * sigmoid(beta * s) multiplies the norm's output per channel
    expected = bn_out * (gate.sample * torch.sigmoid(2.0 * gate.logits)).view(
        1, -1, 1, 1)
    torch.testing.assert_close(seen['relu_in'], expected.detach())
    # a block gate off: the block passes its (non-negative) input through
    with torch.no_grad():
        model.gates.gates()['block'].logits.fill_(-1.0)
    model.eval()
    h = model.architecture.stem(x)
    assert torch.equal(model.architecture.block(h), h)


def test_gates_follow_the_model_not_a_frozen_norm():
    # mmdet's norm_eval=True (every COCO config) keeps the backbone's
    # norms in eval mode while the detector trains; the gates after them
    # must still draw and get the task's gradient
    model = _toy_scs()
    model.train()
    for module in model.architecture.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    model.gates.resample(0, 0)
    gates = model.gates.gates()
    x = torch.randn(4, 2, 2, 2)
    model.architecture._forward(x).sum().backward()
    for name, gate in gates.items():
        assert gate.logits.grad is not None and \
            gate.logits.grad.abs().sum() > 0, name
    model.eval()  # and the model's own eval mode still means 1[s > 0]
    model.zero_grad()
    model.architecture._forward(x).sum().backward()
    assert all(g.logits.grad is None or not g.logits.grad.any()
               for g in gates.values())


def test_gated_flops_match_a_direct_count():
    init_default_scope('mmdet')
    cfg = Config.fromfile(DEMO_GAP)
    arch = MODELS.build(cfg.model).eval()
    flops = module_flops(arch, (3, 96, 96))
    gates = GateSet.from_model(arch)
    total = flops['']
    assert float(gated_flops(arch, gates, flops, hard=True)) == 1.0
    producer = 'backbone.layer3.0.conv1'
    with torch.no_grad():
        gates.gates()[producer].logits[:96] = -1.0  # 96 of 128 off
    ratio = float(gated_flops(arch, gates, flops, hard=True))
    saved = 0.75 * (flops[producer] + flops['backbone.layer3.0.bn1'] +
                    flops['backbone.layer3.0.conv2'])
    assert ratio * total == pytest.approx(total - saved, rel=1e-9)
    # the direct count: slim the same channels away, count again
    modules = dict(arch.named_modules())
    off = torch.arange(128) < 96
    with torch.no_grad():
        modules[producer].weight[off] = 0
        for _, param in channel_followers(arch)[producer + '.weight']:
            param[off] = 0
    apply_slimming(arch, plan_slimming(arch))
    slim = module_flops(arch, (3, 96, 96))
    assert slim[producer] == flops[producer] // 4
    assert slim['backbone.layer3.0.conv2'] == \
        flops['backbone.layer3.0.conv2'] // 4
    assert slim[''] == pytest.approx(ratio * total, rel=1e-9)  # the whole
    # a block gate takes its two convs' FLOPs
    with torch.no_grad():
        gates.gates()['backbone.layer4.1'].logits.fill_(-1.0)
    both = float(gated_flops(arch, gates, flops, hard=True)) * total
    block = sum(flops[f'backbone.layer4.1.{m}']
                for m in ('conv1', 'bn1', 'conv2', 'bn2'))
    assert both == pytest.approx(total - saved - block, rel=1e-9)
    # the FLOPs of a step's draws are those of the structure they draw
    gate = gates.gates()[producer]
    with torch.no_grad():
        gate.sample.copy_((torch.arange(128) % 3 == 0).float())
        gate.logits.copy_(torch.where(gate.sample > 0, 1.0, -1.0))
    for other in gates.gates().values():
        if other is not gate:
            other.sample.copy_(other.hard())
    assert float(gated_flops(arch, gates, flops, sampled=True)) == \
        pytest.approx(float(gated_flops(arch, gates, flops, hard=True)),
                      rel=1e-12)
    # the expectation is differentiable in the logits
    gates.set_beta(2.0)
    gated_flops(arch, gates, flops).backward()
    assert (gates.gates()[producer].logits.grad > 0).all()


def test_landing_keeps_the_highest_logits_that_fit_the_target():
    init_default_scope('mmdet')
    cfg = Config.fromfile(DEMO_GAP)
    model = MODELS.build(
        dict(
            type='SCSModel',
            architecture=cfg.model,
            flops_input_shape=(3, 96, 96)))
    gates, arch, flops = model.gates, model.architecture, model.flops
    gen = torch.Generator().manual_seed(0)
    low = 'backbone.layer3.0.conv1'  # a layer of small logits
    with torch.no_grad():
        for name, gate in gates.gates().items():
            gate.logits.copy_(torch.randn(gate.logits.shape, generator=gen))
        gates.gates()[low].logits.mul_(0.05)
    logits = {n: g.logits.detach().clone() for n, g in gates.gates().items()}
    values = torch.cat(list(logits.values())).unique().tolist()
    # a channel layer with a channel on keeps its top one; blocks do not
    protect = {}
    for name, s in logits.items():
        protect[name] = torch.zeros_like(s, dtype=torch.bool)
        if name in gates.channel_sites and (s > 0).any():
            protect[name][s.argmax()] = True

    def expected(t):
        return {n: (s > t) | protect[n] for n, s in logits.items()}

    def ratio(structure):
        return float(
            gated_flops(arch, gates, flops, hard=True, structure=structure))

    def same(a, b):
        return a.keys() == b.keys() and all(
            torch.equal(a[n], b[n]) for n in a)

    for target in (0.3, 0.5, ratio(expected(0.0)), 0.8):
        t, structure = landing_structure(arch, gates, flops, target)
        assert same(structure, expected(t)) and values.index(t) > 0
        # within the target, and one more gate (the next logit down) is not
        assert ratio(structure) <= target < ratio(
            expected(values[values.index(t) - 1]))
    # at 0.3 the threshold passes every logit of the small layer, which
    # keeps its top channel alone
    t, structure = landing_structure(arch, gates, flops, 0.3)
    assert logits[low].max() <= t
    assert structure[low].sum() == 1 and structure[low][logits[low].argmax()]
    # the whole model fits: every gate on
    t, structure = landing_structure(arch, gates, flops, 1.0)
    assert t < min(values) and all(on.all() for on in structure.values())
    floor = ratio(expected(max(values)))
    with pytest.raises(
            GaPConfigError,
            match=rf'at most 0.01 of the full FLOPs: with every gate off '
            rf'but one channel per layer the model computes {floor:.6f}; '
            rf'give a flops_target >= {math.ceil(floor * 1e4) / 1e4:.4f}'):
        landing_structure(arch, gates, flops, 0.01)
    with pytest.raises(ValueError, match='structure goes with hard=True'):
        gated_flops(arch, gates, flops, structure=expected(0.0))
    # SCSModel.land_: evaluation's 1[s > 0] becomes the landed structure
    # (the logits shifted by t, the small layer's top channel lifted above
    # 0), and a second landing changes nothing
    t, structure = landing_structure(arch, gates, flops, 0.3)
    assert model.land_(0.3) == t
    assert same(gates.hard_state(), structure)
    assert float(model.flops_ratio(hard=True)) == ratio(structure) <= 0.3
    assert torch.equal(gates.gates()['backbone.layer4.0.conv1'].logits,
                       logits['backbone.layer4.0.conv1'] - t)
    after = [g.logits.detach().clone() for g in gates.gates().values()]
    assert model.land_(0.3) is None
    assert all(
        torch.equal(a, g.logits) for a, g in zip(after,
                                                 gates.gates().values()))
    # growing back: below the target, the off gates of highest logit return
    assert model.land_(0.6) is not None
    assert 0.3 < float(model.flops_ratio(hard=True)) <= 0.6
    assert model.land_(0.6) is None


def test_schedule_and_lambda_controller():
    s = SCSSchedule(freeze=10, begin=2, beta_final=256, lambda_interval=4)
    assert s.beta(0) == s.beta(2) == 1.0
    assert s.beta(6) == pytest.approx(16.0)
    assert s.beta(10) == s.beta(50) == 256.0
    assert [t for t in range(12) if s.is_lambda_step(t)] == [2, 6]
    assert not s.is_frozen(9) and s.is_frozen(10)
    assert next_lambda(1.0, 0.8, 0.5, 0.1) == pytest.approx(math.exp(0.06))
    assert next_lambda(1.0, 0.4, 0.5, 0.1) < 1.0  # below target: relax
    # signed: an absolute step that crosses 0 below the target
    assert next_lambda(0.01, 0.4, 0.5, 0.1, 'signed') == pytest.approx(-0.01)
    assert next_lambda(0.0, 0.8, 0.5, 0.1, 'signed') == pytest.approx(0.06)
    with pytest.raises(ValueError, match="one of .*'signed'.*got 'pid'"):
        next_lambda(1.0, 0.4, 0.5, 0.1, 'pid')
    with pytest.raises(
            GaPConfigError,
            match=r"lambda_controller must be one of \('multiplicative', "
            r"'signed'\), got 'additive'"):
        SCSHook(lambda_controller='additive')
    for kwargs, match in (
        (dict(freeze=5, begin=5), 'begin < freeze'),
        (dict(freeze=5, beta_init=0), 'beta_init must be a number > 0'),
        (dict(freeze=5, beta_init=10, beta_final=2), 'must be >= beta_init'),
        (dict(freeze=5, lambda_interval=0), 'lambda_interval must be an int'),
    ):
        with pytest.raises(ScheduleError, match=match):
            SCSSchedule(**kwargs)


def test_bad_values():
    with pytest.raises(
            GaPConfigError, match=r'flops_target must be in '
            r'\(0, 1\].*got 1.5'):
        SCSHook(flops_target=1.5)
    with pytest.raises(GaPConfigError, match='lambda_rate must be > 0'):
        SCSHook(lambda_rate=0)
    with pytest.raises(GaPConfigError,
                       match="land_on_target must be True or False, got 1"):
        SCSHook(land_on_target=1)
    with pytest.raises(GaPConfigError,
                       match='flops_target is None: give a target'):
        SCSHook(land_on_target=True, flops_target=None)
    for bad in (1.5, 1.0, 0.0):
        with pytest.raises(
                GaPConfigError,
                match=rf'freeze={bad}: a float .* must be in \(0, 1\)'):
            SCSHook(freeze=bad)
    with pytest.raises(GaPConfigError, match='lambda_init must be a number'):
        _toy_scs(lambda_init=-1)
    for bad in ((2, 2, 2, 2), (2, 0, 2), (2, 2.5), (True, 3), 160):
        with pytest.raises(
                GaPConfigError,
                match=r'SCSModel flops_input_shape must be C H W \(an '
                r'image\) or N C \(a point cloud\) of positive ints, got ' +
                re.escape(repr(bad))):
            _toy_scs(flops_input_shape=bad)
    with pytest.raises(GaPConfigError, match='no channel group or skippable'):
        GateSet.from_model(nn.Sequential(nn.Linear(2, 2)))


# ------------------------------------------------------------ on a runner
class SCSLogHook(Hook):
    """After every iteration: beta, lambda, the samples and the logits."""

    priority = 'LOWEST'

    def __init__(self):
        self.records = []
        # the gated channels' consumer (its weight, its optimizer state)
        # before each step, and the optimizer state of the channels' own
        # parameters
        self.conv2_before = {}
        self.own_state_before = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        block = getattr(runner.model, 'module',
                        runner.model).architecture.block
        optimizer = runner.optim_wrapper.optimizer

        def state(param):
            return {
                k: v.clone()
                for k, v in optimizer.state.get(param, {}).items()
                if isinstance(v, torch.Tensor) and v.dim()
            }

        self.conv2_before[runner.iter] = (block.conv2.weight.detach().clone(),
                                          state(block.conv2.weight))
        self.own_state_before[runner.iter] = {
            name: state(param)
            for name, param in (('conv1.weight', block.conv1.weight),
                                ('bn1.weight', block.bn1.weight),
                                ('bn1.bias', block.bn1.bias))
        }

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        model = getattr(runner.model, 'module', runner.model)  # DDP
        self.records.append(
            dict(
                step=runner.iter,
                beta=model.gates.beta,
                lam=float(model.scs_lambda),
                frozen=model.gates.frozen,
                flops=float(model.flops_ratio(hard=True)),
                step_flops=runner.message_hub.get_scalar(
                    'train/scs_step_flops').current(),
                sampled=float(model.flops_ratio(sampled=True)),
                logits={
                    n: g.logits.detach().clone()
                    for n, g in model.gates.gates().items()
                }))


class TestSCSOnARunner(GaPRunnerCase):
    # 12 iterations: beta 1 -> 64 over 0..8, lambda every 2, frozen from 8
    HOOK = dict(
        type='SCSHook',
        freeze=8,
        flops_target=0.5,
        lambda_rate=0.5,
        beta_final=64.0,
        lambda_interval=2)

    def setUp(self):
        super().setUp()
        MODELS.register_module(module=SCSToyNet, force=True)
        DATASETS.register_module(module=GaPToyDataset, force=True)
        HOOKS.register_module(module=SCSLogHook, force=True)
        cfg = copy.deepcopy(self.iter_based_cfg)
        cfg.model = dict(
            type='SCSModel',
            architecture=dict(type='SCSToyNet'),
            flops_input_shape=(2, 2, 2),
            lambda_init=1.0)
        cfg.train_dataloader.dataset = dict(type='GaPToyDataset')
        cfg.train_dataloader.batch_size = 4
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.test_dataloader.dataset = dict(type='GaPToyDataset')
        cfg.train_cfg = dict(by_epoch=False, max_iters=12)
        cfg.randomness = dict(seed=0)
        cfg.optim_wrapper = dict(
            type='GaPOptimWrapper',
            optimizer=dict(type='AdamW', lr=0.05, weight_decay=0.05))
        cfg.default_hooks.checkpoint = dict(
            type='CheckpointHook', interval=2, by_epoch=False)
        cfg.custom_hooks = [self.HOOK, dict(type='SCSLogHook')]
        self.cfg = cfg

    def _records(self, runner):
        return next(h for h in runner.hooks
                    if isinstance(h, SCSLogHook)).records

    def test_beta_lambda_and_freeze_follow_the_schedule(self):
        runner = self._train(self.cfg, 'scs')
        records = self._records(runner)
        sch = SCSSchedule(freeze=8, beta_final=64.0, lambda_interval=2)
        lam = 1.0
        for rec in records:
            t = rec['step']
            assert rec['beta'] == pytest.approx(sch.beta(t)), t
            assert rec['frozen'] == (t >= 8), t
            if sch.is_lambda_step(t):
                lam = next_lambda(lam, rec['flops'], 0.5, 0.5)
            assert rec['lam'] == pytest.approx(lam), t
        # the logits train before the freeze and not after
        by_step = {r['step']: r for r in records}
        for name in by_step[0]['logits']:
            assert not torch.equal(by_step[0]['logits'][name],
                                   by_step[7]['logits'][name])
            assert torch.equal(by_step[8]['logits'][name],
                               by_step[11]['logits'][name])

    def test_signed_controller_grows_from_a_seed(self):
        # growing mode: a 2-of-8 seed width (channels only, hard FLOPs below
        # the 0.9 target), lambda from 0: the signed controller turns it
        # negative at once and the FLOPs term rewards the off channels,
        # where the multiplicative one (lambda > 0) penalises them
        runs = {}
        for controller, lam0 in (('signed', 0.0), ('multiplicative', 0.5)):
            cfg = copy.deepcopy(self.cfg)
            cfg.model.update(
                seed_width=0.25, lambda_init=lam0, gate_blocks=False)
            cfg.custom_hooks[0] = dict(
                self.HOOK,
                flops_target=0.9,
                lambda_controller=controller,
                lambda_rate=0.5,
                gate_lr=1.0)
            runs[controller] = self._records(self._train(cfg, controller))
        sch = SCSSchedule(freeze=8, beta_final=64.0, lambda_interval=2)
        lam = 0.0
        for rec in runs['signed']:
            if sch.is_lambda_step(rec['step']):
                lam = next_lambda(lam, rec['flops'], 0.9, 0.5, 'signed')
            assert rec['lam'] == pytest.approx(lam), rec['step']
        assert runs['signed'][0]['flops'] < 0.9
        assert all(r['lam'] < 0 for r in runs['signed'])
        off = torch.arange(8) >= 2  # the seed is the first ceil(0.25 * 8)
        grown = runs['signed'][7]['logits']['block.conv1'][off]
        pruned = runs['multiplicative'][7]['logits']['block.conv1'][off]
        assert grown.mean() > -1.0  # they started at -1
        assert (grown > pruned).all()

    def test_growing_mode_silences_the_channels_outside_the_seed(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.model.update(seed_width=0.25)
        cfg.custom_hooks[0] = dict(self.HOOK, begin=3)
        runner = self._train(cfg, 'silenced')
        log = next(h for h in runner.hooks if isinstance(h, SCSLogHook))
        # after the warm-up (their gates 0, so no gradient, only AdamW's
        # decay) what conv2 reads from the channels outside the seed is far
        # from 0; when gating begins, before its first step, it is exactly
        # 0, and the channels' draws on from then learn it back
        weight, _ = log.conv2_before[2]
        assert (weight[:, 2:].abs().sum((0, 2, 3)) > 0.1).all()
        weight, _ = log.conv2_before[3]
        assert (weight[:, 2:] == 0).all()
        assert (weight[:, :2] != 0).any()  # the seed's slices are kept
        weight, _ = log.conv2_before[4]
        assert (weight[:, 2:] != 0).any()

    def test_silencing_zeroes_the_optimizer_state_too(self):
        # SGD's momentum holds the warm-up's weight decay of the channels
        # outside the seed; left there, the first step would move them
        cfg = copy.deepcopy(self.cfg)
        cfg.model.update(seed_width=0.25)
        cfg.custom_hooks[0] = dict(self.HOOK, begin=3)
        cfg.optim_wrapper.optimizer = dict(
            type='SGD', lr=0.05, momentum=0.9, weight_decay=0.1)
        log = next(h for h in self._train(cfg, 'sgd_silenced').hooks
                   if isinstance(h, SCSLogHook))
        momentum = log.conv2_before[2][1]['momentum_buffer']
        assert (momentum[:, 2:] != 0).all()
        momentum = log.conv2_before[3][1]['momentum_buffer']
        assert (momentum[:, 2:] == 0).all() and (momentum[:, :2] != 0).all()

    def test_silencing_restarts_adam_state_like_a_regrown_weights(self):
        # through the warm-up the channels outside the seed had no gradient
        # (gate 0), so Adam's moments there are exactly 0 under a step count
        # of 3: restarted at 0 they would move at several times the learning
        # rate. When gating begins their first moments are 0 and their
        # second moments the mean of their tensor's other positions, in the
        # consumer's input slices and in the channels' own weights and norm
        cfg = copy.deepcopy(self.cfg)
        cfg.model.update(seed_width=0.25)
        cfg.custom_hooks[0] = dict(self.HOOK, begin=3)
        log = next(h for h in self._train(cfg, 'adam_silenced').hooks
                   if isinstance(h, SCSLogHook))
        consumer = {2: log.conv2_before[2][1], 3: log.conv2_before[3][1]}
        cases = [('conv2.weight', (slice(None), slice(2, None)),
                  (slice(None), slice(None, 2)), consumer)]
        for name in ('conv1.weight', 'bn1.weight', 'bn1.bias'):
            cases.append((name, slice(2, None), slice(None, 2), {
                t: log.own_state_before[t][name]
                for t in (2, 3)
            }))
        for name, off, seed, states in cases:
            assert (states[2]['exp_avg_sq'][off] == 0).all(), name
            assert (states[2]['exp_avg_sq'][seed] > 0).any(), name
            after = states[3]
            assert (after['exp_avg'][off] == 0).all(), name
            restarted = after['exp_avg_sq'][off]
            assert (restarted == restarted.flatten()[0]).all(), name
            assert float(restarted.flatten()[0]) == pytest.approx(
                float(after['exp_avg_sq'][seed].mean()), rel=1e-5), name

    def test_growing_refuses_a_frozen_consumer(self):
        # silenced slices of a frozen layer would stay 0 for good
        MODELS.register_module(module=SCSToyNetFrozenConv2, force=True)
        cfg = copy.deepcopy(self.cfg)
        cfg.model.update(
            seed_width=0.25, architecture=dict(type='SCSToyNetFrozenConv2'))
        with pytest.raises(
                GaPConfigError,
                match=r"1 of those layers are frozen .*\['block\.conv2'\]"
                r'.*frozen_stages=-1'):
            self._train(cfg, 'frozen_consumer')
        # pruning mode silences nothing, so it trains
        cfg.model.update(seed_width=None)
        self._train(cfg, 'frozen_consumer_pruning')

    def test_growing_resume_across_the_silencing_is_bitwise_identical(self):
        # checkpoints every 2 iterations, gating (and the silencing) at 3:
        # killed after 3, resumed from iter_2, the silencing runs again
        cfg = copy.deepcopy(self.cfg)
        cfg.model.update(seed_width=0.25, lambda_init=0.0)
        cfg.custom_hooks[0] = dict(
            self.HOOK, begin=3, lambda_controller='signed', lambda_rate=0.5)
        straight = self._train(copy.deepcopy(cfg), 'grow_straight')
        killed = copy.deepcopy(cfg)
        killed.custom_hooks.append(
            dict(type='KillAfterIterHook', iteration=3))
        with pytest.raises(KilledForTest):
            self._train(killed, 'grow_first')
        cfg.resume = True
        cfg.load_from = osp.join(self.temp_dir.name, 'grow_first',
                                 'iter_2.pth')
        resumed = self._train(cfg, 'grow_resumed')
        sa, sb = straight.model.state_dict(), resumed.model.state_dict()
        assert set(sa) == set(sb)
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key

    def test_multiplicative_controller_needs_a_positive_start(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.model.update(lambda_init=0.0)
        with pytest.raises(
                GaPConfigError,
                match=r"lambda_init is 0.0: give lambda_init > 0 .*"
                r"lambda_controller='signed'"):
            self._train(cfg, 'zero')

    def test_warm_up_holds_the_gates_on_without_penalty(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks[0] = dict(self.HOOK, begin=3)
        runner = self._train(cfg, 'warmup')
        by_step = {r['step']: r for r in self._records(runner)}
        # what each step computed: everything in the warm-up, then the draws,
        # then the frozen structure
        for t, rec in by_step.items():
            want = 1.0 if t < 3 else rec['sampled'] if t < 8 else rec['flops']
            assert rec['step_flops'] == pytest.approx(want), t
        assert any(by_step[t]['step_flops'] < 1 for t in range(3, 8))
        for t in (0, 1, 2):  # gates all on (logit 1), untouched, lambda 1
            assert by_step[t]['lam'] == 1.0
            assert by_step[t]['beta'] == 1.0
            for logits in by_step[t]['logits'].values():
                assert torch.equal(logits, torch.ones_like(logits)), t
        assert any(not torch.equal(v, torch.ones_like(v))
                   for v in by_step[4]['logits'].values())
        assert by_step[3]['lam'] != 1.0  # the first lambda step is begin
        with pytest.raises(GaPConfigError, match=r'begin=1.0: a float'):
            SCSHook(begin=1.0)

    def test_resume_is_bitwise_identical(self):
        straight = self._train(self.cfg, 'straight')
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks.append(dict(type='KillAfterIterHook', iteration=6))
        with pytest.raises(KilledForTest):
            self._train(cfg, 'first')
        cfg = copy.deepcopy(self.cfg)
        cfg.resume = True
        cfg.load_from = osp.join(self.temp_dir.name, 'first', 'iter_6.pth')
        resumed = self._train(cfg, 'resumed')
        sa, sb = straight.model.state_dict(), resumed.model.state_dict()
        assert set(sa) == set(sb) and 'scs_lambda' in sa
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key

    def _landing_cfg(self):
        """conv1's 8 channels gated (not the block, whose gate would take
        them all); by the freeze at 8 the structure falls to 0.46 of the
        FLOPs, below the target of 0.75."""
        cfg = copy.deepcopy(self.cfg)
        cfg.model.update(gate_blocks=False, lambda_init=1e-4)
        cfg.custom_hooks[0] = dict(self.HOOK, land_on_target=True,
                                   flops_target=0.75)
        return cfg

    def test_landing_on_the_target_at_the_freeze(self):
        cfg = copy.deepcopy(self._landing_cfg())
        cfg.custom_hooks[0]['land_on_target'] = False
        reached = self._records(self._train(cfg, 'reached'))
        landed = self._records(self._train(self._landing_cfg(), 'landed'))
        # the same run up to the freeze; there the controller's structure
        # is below 0.75 and the landing grows it to the largest within it
        assert reached[7]['logits'].keys() == landed[7]['logits'].keys()
        for name in reached[7]['logits']:
            assert torch.equal(reached[7]['logits'][name],
                               landed[7]['logits'][name])
        assert reached[8]['flops'] < 0.6 < landed[8]['flops'] <= 0.75
        model = MODELS.build(self._landing_cfg().model)
        with torch.no_grad():
            for name, gate in model.gates.gates().items():
                gate.logits.copy_(landed[8]['logits'][name])
        assert model.land_(0.75) is None  # nothing larger fits
        assert all(r['flops'] == landed[8]['flops'] for r in landed[8:])

    def test_a_target_below_the_landing_floor_fails_before_training(self):
        cfg = self._landing_cfg()
        cfg.custom_hooks[0]['flops_target'] = 0.01
        model = MODELS.build(cfg.model)
        floor = landing_floor(model.architecture, model.gates, model.flops)
        assert 0.01 < floor < 1
        # every block off and one of conv1's 8 channels on: a direct count
        keep = {n: torch.zeros_like(g.logits, dtype=torch.bool)
                for n, g in model.gates.gates().items()}
        keep['block.conv1'][5] = True
        assert floor == float(
            gated_flops(model.architecture, model.gates, model.flops,
                        hard=True, structure=keep))
        with pytest.raises(GaPConfigError,
                           match=rf'at most 0.01 .* computes {floor:.6f}'):
            self._train(cfg, 'floor')
        # refused before the first iteration (checkpoints every 2)
        work_dir = osp.join(self.temp_dir.name, 'floor')
        assert not any(
            f.endswith('.pth') for _, _, files in os.walk(work_dir)
            for f in files)

    def test_resume_after_the_landing_is_bitwise_identical(self):
        straight = self._train(self._landing_cfg(), 'straight')
        cfg = self._landing_cfg()
        cfg.custom_hooks.append(dict(type='KillAfterIterHook', iteration=10))
        with pytest.raises(KilledForTest):
            self._train(cfg, 'first')
        cfg = self._landing_cfg()
        cfg.resume = True
        cfg.load_from = osp.join(self.temp_dir.name, 'first', 'iter_10.pth')
        resumed = self._train(cfg, 'resumed')
        sa, sb = straight.model.state_dict(), resumed.model.state_dict()
        assert set(sa) == set(sb)
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key

    def test_gate_logits_are_trained_by_sgd_not_adamw(self):
        # gate_lr=None: the logits go to AdamW (no weight decay on them)
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks[0] = dict(self.HOOK, gate_lr=None)
        cfg.optim_wrapper.paramwise_cfg = dict(
            custom_keys={'gates.': dict(decay_mult=0.)})
        adam = self._train(cfg, 'adam')
        state = adam.optim_wrapper.optimizer.state
        assert all(g.logits in state
                   for g in adam.model.gates.gates().values())
        # the default: SGD inside the step, AdamW never holds them
        runner = self._train(self.cfg, 'sgd')
        state = runner.optim_wrapper.optimizer.state
        gates = runner.model.gates.gates().values()
        assert all(g.logits not in state for g in gates)
        assert runner.model.architecture.fc.weight in state

    def test_gate_step_is_sgd_on_the_gradient(self):
        from mmengine.optim import build_optim_wrapper
        model = _toy_scs()
        hook = SCSHook(gate_lr=0.5)
        hook.model = model
        wrapper = build_optim_wrapper(
            model,
            dict(
                type='GaPOptimWrapper',
                optimizer=dict(type='AdamW', lr=0.1, weight_decay=0.1)))
        hook._wrapper = wrapper
        wrapper.add_stage(hook._stage)
        model.gates.set_beta(2.0)
        model.gates.resample(0, 0)
        x, y = torch.randn(4, 2, 2, 2), torch.randn(4)
        losses = model(x, y, mode='loss')
        loss = losses['loss'] + losses['loss_flops']
        wrapper.backward(loss)
        gates = model.gates.gates()
        before = {n: g.logits.detach().clone() for n, g in gates.items()}
        grads = {n: g.logits.grad.clone() for n, g in gates.items()}
        assert all(bool((g != 0).any()) for g in grads.values())
        fc = model.architecture.fc.weight.detach().clone()
        wrapper.step()
        for name, gate in gates.items():
            assert torch.allclose(gate.logits, before[name] - 0.5 *
                                  grads[name]), name
            assert gate.logits.grad is None
        assert not torch.equal(model.architecture.fc.weight, fc)

    def test_gate_sgd_needs_the_gap_optim_wrapper(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.optim_wrapper.type = 'OptimWrapper'
        with pytest.raises(GaPConfigError, match="type='GaPOptimWrapper'"):
            self._train(cfg, 'plain_wrapper')
        for bad in (0, -1.0, float('nan'), True, '1'):
            with pytest.raises(GaPConfigError, match='gate_lr must be'):
                SCSHook(gate_lr=bad)
        cfg = copy.deepcopy(self.cfg)
        cfg.model.lambda_init = 0.0
        with pytest.raises(GaPConfigError, match='lambda_init is 0.0'):
            self._train(cfg, 'lambda_zero')

    def test_gate_gradients_tool_splits_task_and_flops(self):
        import importlib.util
        import json
        spec = importlib.util.spec_from_file_location(
            'scs_gate_gradients',
            osp.join(ROOT, 'tools', 'analysis_tools',
                     'scs_gate_gradients.py'))
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        cfg_path = osp.join(self.temp_dir.name, 'scs_toy.py')
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks = [self.HOOK]
        cfg.dump(cfg_path)
        out = osp.join(self.temp_dir.name, 'grads.json')
        assert tool.main([
            cfg_path, '--iters', '6', '--beta', '2', '--work-dir',
            osp.join(self.temp_dir.name, 'grads'), '--out-json', out
        ]) == 0
        with open(out) as f:
            rows = json.load(f)
        assert [r['gate'] for r in rows] == ['block.conv1', 'block']
        # the logits stay put, so the FLOPs part is that of the initial
        # gates at beta 2, exactly
        model = _toy_scs()
        model.gates.set_beta(2.0)
        gates = list(model.gates.gates().values())
        direct = torch.autograd.grad(model.flops_ratio(),
                                     [g.logits for g in gates])
        for row, grad in zip(rows, direct):
            assert row['flops'] == pytest.approx(float(grad.abs().mean()))
            assert row['task'] > 0
            assert row['ratio'] == pytest.approx(row['flops'] / row['task'])
        with pytest.raises(SystemExit):
            tool.main([cfg_path, '--iters', '1'])
        plain = osp.join(self.temp_dir.name, 'plain.py')
        cfg.model = dict(type='SCSToyNet')
        cfg.dump(plain)
        assert tool.main([plain]) == 1

    def test_hook_needs_an_scs_model(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.model = dict(type='SCSToyNet')
        with pytest.raises(
                GaPConfigError, match="model=dict\\(type='SCSModel'"):
            self._train(cfg, 'plain')


# ------------------------------------------------------------ 2 ranks
def _scs_worker(rank, port, work_dir):
    os.environ.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD))
    from mmengine.runner import Runner

    from gap_mm.utils import setup_cpu_distributed
    MODELS.register_module(module=SCSToyNet, force=True)
    DATASETS.register_module(module=GaPToyDataset, force=True)
    HOOKS.register_module(module=SCSLogHook, force=True)
    cfg = Config(
        dict(
            work_dir=osp.join(work_dir, 'scs'),
            launcher='pytorch',
            model=dict(
                type='SCSModel',
                architecture=dict(type='SCSToyNet'),
                flops_input_shape=(2, 2, 2),
                init_logit=0.01),
            # after the freeze the logits get no gradient
            model_wrapper_cfg=dict(
                type='MMDistributedDataParallel', find_unused_parameters=True),
            train_dataloader=dict(
                dataset=dict(type='GaPToyDataset'),
                sampler=dict(type='InfiniteSampler', shuffle=True),
                batch_size=3,
                num_workers=0),
            optim_wrapper=dict(
                type='GaPOptimWrapper',
                optimizer=dict(type='AdamW', lr=0.05, weight_decay=0.0)),
            train_cfg=dict(by_epoch=False, max_iters=10),
            default_hooks=dict(checkpoint=None),
            log_processor=dict(by_epoch=False),
            custom_hooks=[
                dict(TestSCSOnARunner.HOOK, freeze=7),
                dict(type='SCSLogHook')
            ],
            # a different global seed per rank: the draws must not come
            # from the global generator
            randomness=dict(seed=0, diff_rank_seed=True),
            experiment_name=f'scs_rank{rank}'))
    assert setup_cpu_distributed(cfg, 'pytorch')
    runner = Runner.from_cfg(cfg)
    samples = []
    orig = SCSHook.before_train_iter

    def record(self, runner_, batch_idx, data_batch=None):
        orig(self, runner_, batch_idx, data_batch)
        samples.append([
            g.sample.clone()
            for g in runner_.model.module.gates.gates().values()
        ])

    SCSHook.before_train_iter = record
    try:
        runner.train()
    finally:
        SCSHook.before_train_iter = orig
    result = dict(
        samples=samples,
        lam=[
            r['lam'] for r in next(
                h for h in runner.hooks if isinstance(h, SCSLogHook)).records
        ],
        params={
            k: v.detach().clone()
            for k, v in runner.model.module.named_parameters()
        })
    _finish(work_dir, 'scs', rank, result)


@pytest.mark.timeout(300)
def test_two_ranks_draw_the_same_gates(tmp_path):
    mp.spawn(_scs_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    r0, r1 = _results(tmp_path, 'scs')
    assert len(r0['samples']) == 10
    for a, b in zip(r0['samples'], r1['samples']):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    # logit 0.01: p ~ 1/2 at first, so the draws are not all alike
    assert len({tuple(s[0].tolist()) for s in r0['samples'][:7]}) > 1
    assert r0['lam'] == r1['lam']
    for key, value in r0['params'].items():
        assert torch.equal(value, r1['params'][key]), key


def test_a_block_with_a_plugin_after_its_last_conv_is_not_skipped():
    # a context block after conv3 adds a term to the branch even when the
    # branch is 0: the block gate would not remove it, so no block gate
    from mmdet.models.backbones.resnet import Bottleneck
    plugin = [dict(cfg=dict(type='ContextBlock', ratio=1. / 4),
                   position='after_conv3')]
    net = nn.Sequential(Bottleneck(16, 4), Bottleneck(16, 4, plugins=plugin))
    gates = GateSet.from_model(net)
    assert list(gates.block_sites) == ['0']
    # its channels are left alone too (channels.py: a block with plugins)
    assert list(gates.channel_sites) == ['0.conv1', '0.conv2']


def test_only_gates_the_named_layers_and_refuses_tied_ones():
    init_default_scope('mmdet')
    cfg = Config.fromfile(DEMO_GAP)
    arch = MODELS.build(cfg.model)
    gates = GateSet.from_model(arch, only=('backbone.layer2.',))
    assert list(gates.channel_sites) == [
        'backbone.layer2.0.conv1', 'backbone.layer2.1.conv1'
    ]
    assert list(gates.block_sites) == ['backbone.layer2.1']
    # a block's last conv: tied to its shortcut by the residual sum
    with pytest.raises(
            GaPConfigError,
            match=r"cannot gate 'backbone.layer2.0.conv2': the channels of "
            r'backbone.layer2.0.conv2 are tied by the residual sum of '
            r'backbone.layer2.0'):
        GateSet.from_model(arch, only=('backbone.layer2.0.conv2', ))
    with pytest.raises(GaPConfigError, match=r"cannot gate 'neck.fpn_convs"):
        GateSet.from_model(arch, only=('neck.fpn_convs.0', ))
    with pytest.raises(GaPConfigError, match='has no module of that name'):
        GateSet.from_model(arch, only=('backbone.layer9', ))
    with pytest.raises(
            GaPConfigError,
            match=r'backbone.layer2.0.conv1 can be gated but is left out by '
            r"exclude=\['backbone.layer2.0'\]"):
        GateSet.from_model(
            arch,
            only=('backbone.layer2.0.conv1', ),
            exclude=('backbone.layer2.0', ))


def test_a_group_norm_chain_is_no_channel_group():
    """A removed channel changes a group norm's statistics for the others:
    such a chain is neither gated nor slimmed."""
    from mmcv.cnn import ConvModule

    from gap_mm.sparsity import find_channel_groups

    def chain(norm):
        return nn.Sequential(
            ConvModule(4, 8, 1, norm_cfg=norm), ConvModule(8, 8, 1))

    assert [g.producer for g in find_channel_groups(
        chain(dict(type='BN')))[0]] == ['0.conv']
    assert find_channel_groups(chain(dict(type='GN', num_groups=2)))[0] == []
