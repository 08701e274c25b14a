# Copyright (c) gap_mm contributors. All rights reserved.
"""The engine checks: masks, a prune event and the masking cost on the
device, and one ``GaPAmpOptimWrapper`` step per autocast dtype."""
import argparse
import copy
import math
import os.path as osp
import statistics
import sys
import time
from typing import Callable, List

from .common import ROOT, SPARSITY, Findings, Skip, stats


class EngineSetup:
    """The model, data and step the engine and AMP checks share.

    One model is built on the CPU from a fixed seed; every check takes a
    deep copy on the device it needs, so the device and the CPU start from
    the same weights.
    """

    def __init__(self, args: argparse.Namespace, kind: str) -> None:
        import torch
        self.torch = torch
        self.device = torch.device('cpu' if args.cpu else 'cuda')
        cuda = self.device.type == 'cuda'
        self.batch = args.batch or (2 if cuda else 1)
        self.size = args.size or (512 if cuda else 128)
        self.rounds = args.rounds or (5 if cuda else 3)
        self.kind = kind
        if self.kind == 'auto':
            self.kind = 'mmdet' if cuda and _mmdet_usable() else 'synthetic'
        torch.manual_seed(0)
        if self.kind == 'mmdet':
            sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
            from bench_masking import build_detector
            self.base, self._data = build_detector(self.size, batch=self.batch)
            self.name = 'mmdet Faster R-CNN R50-FPN'
        else:
            from .model import SyntheticRetinaNet
            width = args.width or (64 if cuda else 16)
            self.base = SyntheticRetinaNet(width)
            self.base.train()
            gen = torch.Generator().manual_seed(0)
            self._data = torch.randn(
                self.batch, 3, self.size, self.size, generator=gen)
            self.name = (f'synthetic RetinaNet R50-FPN (plain torch, '
                         f'width {width})')
        self.num_params = sum(p.numel() for p in self.base.parameters())

    def describe(self) -> dict:
        return dict(
            model=self.name,
            params=self.num_params,
            batch=self.batch,
            image_size=self.size,
            device=str(self.device))

    def fresh(self, device):
        """A copy of the seeded model on ``device``."""
        return copy.deepcopy(self.base).to(device)

    def data(self, device):
        if self.kind == 'mmdet':
            return self._data  # the data preprocessor moves it
        return self._data.to(device)

    def step(self, model, wrapper, data) -> float:
        """One training step through ``wrapper``; returns the loss."""
        if self.kind == 'mmdet':
            log_vars = model.train_step(data, wrapper)
            return float(log_vars['loss'])
        with wrapper.optim_context(model):
            loss = model.loss(data)
        wrapper.update_params(loss)
        return float(loss.detach())

    def sync(self, device=None) -> None:
        device = self.device if device is None else device
        if self.torch.device(device).type == 'cuda':
            self.torch.cuda.synchronize(device)

    def timed(self, fn: Callable, device=None) -> float:
        """Seconds ``fn()`` takes, the device synchronised around it."""
        self.sync(device)
        start = time.perf_counter()
        fn()
        self.sync(device)
        return time.perf_counter() - start


def _mmdet_usable() -> bool:
    """Whether mmdet builds detectors here with mmcv's CUDA ops."""
    try:
        import mmcv.ops
        import mmdet.models  # noqa: F401
    except Exception:  # noqa: B902  any import failure means no
        return False
    version = getattr(mmcv.ops, 'get_compiling_cuda_version', None)
    return version is not None and version() != 'not available'


def _masked_nonzero(sp) -> List[str]:
    """Layers with a weight that is not +0.0 (bit for bit) where pruned."""
    import torch
    bad = []
    for name in sp.names:
        pruned = sp.pruned_mask(name)
        if pruned is None:
            continue
        values = sp.params[name].detach()[pruned]
        bits = values.view(torch.int32 if values.element_size() ==
                           4 else torch.int16)
        if bool((bits != 0).any()):
            bad.append(name)
    return bad


def _state_nonzero(optimizer, sp, masks=None) -> List[str]:
    """Layers whose optimizer state is not 0 where ``masks`` (default: the
    pruned masks) is True."""
    bad = []
    for name in sp.names:
        mask = sp.pruned_mask(name) if masks is None else masks.get(name)
        if mask is None:
            continue
        state = optimizer.state.get(sp.params[name], {})
        for value in state.values():
            if (hasattr(value, 'shape') and value.shape == mask.shape
                    and bool((value[mask] != 0).any())):
                bad.append(name)
                break
    return bad


def _miscounted(sp) -> List[str]:
    """Sparse layers whose kept count is not their exact target."""
    return [
        r['name'] for r in sp.layer_stats()
        if not r['dense'] and r['kept'] != sp.num_keep[r['name']]
    ]


def _different_masks(sp, other) -> List[str]:
    """Layers whose masks differ between two sparsifiers (on any
    devices)."""
    import torch
    out = []
    for name in sp.names:
        a, b = sp.pruned_mask(name), other.pruned_mask(name)
        if (a is None) != (b is None) or (
                a is not None and not torch.equal(a.cpu(), b.cpu())):
            out.append(name)
    return out


def _largest_partition(sp) -> int:
    return max(
        range(sp.num_partitions),
        key=lambda k: sum(sp.params[n].numel() for n in sp.partitions[k]))


def _sgd(model):
    import torch
    return torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)


def check_masks(setup: EngineSetup) -> dict:
    """Masks on device tensors: exact counts, the CPU's masks, two steps of
    ``GaPOptimWrapper`` and a GaP grow-train-prune event."""
    import torch

    from gap_mm.engine import GaPOptimWrapper
    from gap_mm.sparsity import MagnitudeSparsifier, select_prunable
    f = Findings()
    dev = setup.device
    model, ref = setup.fresh(dev), setup.fresh('cpu')
    params, ref_params = select_prunable(model), select_prunable(ref)
    numel = sum(p.numel() for p in params.values())
    f.results.update(
        setup.describe(),
        prunable_weights=numel,
        prunable_layers=len(params),
        sparsity_target=SPARSITY,
        distribution='erk',
        partitions=4)
    sp = MagnitudeSparsifier(params, SPARSITY, 'erk', partitions=4)
    ref_sp = MagnitudeSparsifier(ref_params, SPARSITY, 'erk', partitions=4)
    f.results['first_prune_s'] = round(
        setup.timed(lambda: sp.prune(range(4))), 6)
    ref_sp.prune(range(4))
    kept = sum(r['kept'] for r in sp.layer_stats())
    f.results['sparsity_achieved'] = 1 - kept / numel
    f.results['kept'] = kept
    f.results['kept_target'] = sum(sp.num_keep.values())
    f.expect(kept == f.results['kept_target'],
             f'{kept} weights kept, the targets sum to '
             f'{f.results["kept_target"]}')
    bad = _miscounted(sp)
    f.results['miscounted_layers'] = bad
    f.expect(not bad, f'kept counts differ from the targets in {bad}')
    bad = _masked_nonzero(sp)
    f.expect(not bad, f'pruned weights are not +0.0 in {bad}')
    bad = _different_masks(sp, ref_sp)
    f.results['layers_unlike_cpu'] = bad
    f.expect(not bad, f'the device masks differ from the CPU masks in {bad}')
    same = bool(torch.equal(sp.fingerprint(), ref_sp.fingerprint()))
    f.results['fingerprint_equals_cpu'] = same
    f.expect(same, 'the mask fingerprints of device and CPU differ')

    optimizer = _sgd(model)
    wrapper = GaPOptimWrapper(optimizer=optimizer)
    wrapper.attach_sparsifier(sp)
    before = {n: p.detach().clone() for n, p in params.items()}
    data = setup.data(dev)
    losses = [setup.step(model, wrapper, data) for _ in range(2)]
    f.results['step_losses'] = losses
    f.expect(all(math.isfinite(v) for v in losses), f'losses {losses}')
    bad = _masked_nonzero(sp)
    f.results['steps_masked_nonzero_layers'] = bad
    f.expect(not bad, f'after two steps pruned weights moved in {bad}')
    bad = _state_nonzero(optimizer, sp)
    f.expect(not bad, f'after two steps momentum at pruned weights in {bad}')
    moved = sum(
        int((params[n].detach() != before[n]).sum()) for n in params)
    f.results['steps_weights_moved'] = moved
    f.expect(moved > 0, 'the steps moved no kept weight')

    part = _largest_partition(sp)
    grown = sp.grow([part])
    sp.init_regrown_state_(optimizer, grown)
    for _ in range(2):
        setup.step(model, wrapper, data)
    dense_nonzero = sum(
        int((params[n].detach()[m] != 0).sum()) for n, m in grown.items())
    f.results['event_partition'] = part
    f.results['event_regrown_weights_moved'] = dense_nonzero
    f.expect(dense_nonzero > 0, 'the regrown partition did not train')
    pruned = sp.prune([part])
    sp.zero_optimizer_state_(optimizer, pruned)
    bad = _miscounted(sp) + _masked_nonzero(sp)
    f.expect(not bad, f'after the GaP event counts or zeros wrong in {bad}')
    bad = _state_nonzero(optimizer, sp, pruned)
    f.expect(not bad, f'optimizer state left at newly pruned in {bad}')

    copy_sp = MagnitudeSparsifier(params, SPARSITY, 'erk', partitions=4)
    copy_sp.load_state_dict(sp.state_dict())
    bad = _different_masks(sp, copy_sp)
    f.expect(not bad, f'state_dict round trip changed the masks of {bad}')
    if dev.type == 'cuda':
        f.results['peak_memory_gib'] = round(
            torch.cuda.max_memory_allocated(dev) / 2**30, 3)
    return f.done()


def check_prune_event(setup: EngineSetup) -> dict:
    """One GaP prune event (the largest of K=4 partitions back to 80%
    uniform, and its momentum zeroed) on the device and on the CPU, from
    the same weights, rounds interleaved."""
    import torch

    from gap_mm.sparsity import MagnitudeSparsifier, select_prunable
    f = Findings()
    sides = {}
    for side, device in (('device', setup.device), ('cpu', 'cpu')):
        model = setup.fresh(device)
        params = select_prunable(model)
        optimizer = _sgd(model)
        for p in params.values():
            optimizer.state[p]['momentum_buffer'] = torch.ones_like(p)
        sp = MagnitudeSparsifier(params, SPARSITY, 'uniform', partitions=4)
        sp.prune(range(4))
        part = _largest_partition(sp)
        originals = {
            n: params[n].detach().clone()
            for n in sp.partitions[part]
        }
        sides[side] = (device, params, optimizer, sp, part, originals)

    def event(side):
        device, params, optimizer, sp, part, originals = sides[side]
        sp.grow([part])
        with torch.no_grad():  # the partition trained dense: restore it
            for n, w in originals.items():
                params[n].copy_(w)

        def prune():
            sp.zero_optimizer_state_(optimizer, sp.prune([part]))

        return setup.timed(prune, device)

    times = {'device': [], 'cpu': []}
    for round_idx in range(setup.rounds + 1):
        for side in times:
            elapsed = event(side)
            if round_idx:  # round 0 warms up
                times[side].append(elapsed)
    dev_sp, cpu_sp = sides['device'][3], sides['cpu'][3]
    part = sides['device'][4]
    f.results.update(
        setup.describe(),
        event='GaP prune of the largest of K=4 partitions at 80% uniform, '
        'SGD momentum zeroed at the pruned weights',
        partition_weights=sum(dev_sp.params[n].numel()
                              for n in dev_sp.partitions[part]),
        prunable_weights=sum(p.numel() for p in dev_sp.params.values()),
        cpu_threads=torch.get_num_threads(),
        device_s=stats(times['device']),
        cpu_s=stats(times['cpu']),
        cpu_over_device=round(
            statistics.median(times['cpu']) /
            statistics.median(times['device']), 3))
    bad = _different_masks(dev_sp, cpu_sp)
    f.expect(not bad, f'device and CPU events chose other masks in {bad}')
    bad = _miscounted(dev_sp)
    f.expect(not bad, f'kept counts wrong after the event in {bad}')
    return f.done()


def check_masking_cost(setup: EngineSetup) -> dict:
    """The masking of one step (gradients before, weights after) as a share
    of the dense training step, and masked against dense steps, paired."""
    import torch
    from mmengine.optim import OptimWrapper

    from gap_mm.engine import GaPOptimWrapper
    from gap_mm.sparsity import MagnitudeSparsifier, select_prunable
    f = Findings()
    dev = setup.device
    model = setup.fresh(dev)
    params = select_prunable(model)
    sp = MagnitudeSparsifier(params, SPARSITY, 'global')
    sp.prune([0])
    optimizer = _sgd(model)
    dense = OptimWrapper(optimizer=optimizer)
    masked = GaPOptimWrapper(optimizer=optimizer)
    masked.attach_sparsifier(sp)
    data = setup.data(dev)
    steps = {'dense': [], 'gap': []}
    for round_idx in range(setup.rounds + 1):
        for label, wrapper in (('dense', dense), ('gap', masked)):
            elapsed = setup.timed(lambda: setup.step(model, wrapper, data))
            if round_idx:
                steps[label].append(elapsed)
    for p in params.values():
        p.grad = torch.randn_like(p)

    def mask():
        sp.mask_grads_()
        sp.apply_masks_()

    masking = [setup.timed(mask) for _ in range(3 * setup.rounds + 1)][1:]
    dense_s = statistics.median(steps['dense'])
    f.results.update(
        setup.describe(),
        prunable_weights=sum(p.numel() for p in params.values()),
        optimizer='SGD momentum 0.9, weight decay 1e-4',
        dense_step_s=stats(steps['dense']),
        gap_step_s=stats(steps['gap']),
        gap_over_dense_paired=round(
            statistics.median(
                g / d for g, d in zip(steps['gap'], steps['dense'])), 4),
        masking_s=stats(masking),
        masking_share_pct=round(
            100 * statistics.median(masking) / dense_s, 3),
        target_share_pct=2.0)
    f.results['meets_target'] = f.results['masking_share_pct'] <= 2.0
    bad = _masked_nonzero(sp)
    f.expect(not bad, f'pruned weights are not 0 after the steps in {bad}')
    return f.done()


def _amp_wrapper(optimizer, dtype: str, device):
    """``GaPAmpOptimWrapper`` with dynamic loss scaling.

    On the CPU, mmengine's constructor asserts a GPU; the rehearsal builds
    the wrapper with that one assertion answered yes. Its loss scaler is
    then torch's CUDA ``GradScaler``, which disables itself without CUDA,
    so the CPU step runs bf16 autocast without loss scaling.
    """
    from gap_mm.engine import GaPAmpOptimWrapper
    if device.type == 'cuda':
        return GaPAmpOptimWrapper(
            optimizer=optimizer, loss_scale='dynamic', dtype=dtype)
    import warnings
    from unittest import mock

    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
    with mock.patch.object(amp_module, 'is_cuda_available', lambda: True), \
            warnings.catch_warnings():
        warnings.simplefilter('ignore')  # GradScaler: CUDA not available
        return GaPAmpOptimWrapper(
            optimizer=optimizer, loss_scale='dynamic', dtype=dtype)


def check_amp(setup: Callable[[], EngineSetup], dtype: str) -> dict:
    """One ``GaPAmpOptimWrapper`` step under ``dtype`` autocast: the
    forward in ``dtype``, fp32 weights, masked gradients and weights, no
    momentum at pruned weights. A step the loss scaler skips (an overflow)
    is retried, up to 4 steps."""
    import torch

    from gap_mm.engine.optimizers.gap_optim_wrapper import StepStage
    from gap_mm.sparsity import MagnitudeSparsifier, select_prunable
    if (torch.cuda.is_available() and dtype == 'bfloat16'
            and not torch.cuda.is_bf16_supported()):
        raise Skip(f'{torch.cuda.get_device_name(0)} has no bfloat16')
    setup = setup()
    dev = setup.device
    f = Findings()
    model = setup.fresh(dev)
    params = select_prunable(model)
    sp = MagnitudeSparsifier(params, SPARSITY, 'uniform')
    sp.prune([0])
    optimizer = _sgd(model)
    wrapper = _amp_wrapper(optimizer, dtype, dev)
    wrapper.attach_sparsifier(sp)

    class Probe(StepStage):
        """What the gradients look like around the masking."""

        def __init__(self):
            self.dense_at_pruned = 0
            self.masked_left = []

        def before_mask(self, iteration):
            self.dense_at_pruned += sum(
                int((sp.params[n].grad[sp.pruned_mask(n)] != 0).sum())
                for n in sp.names if sp.params[n].grad is not None)

        def after_step(self, iteration):
            self.masked_left += [
                n for n in sp.names if sp.params[n].grad is not None and bool(
                    (sp.params[n].grad[sp.pruned_mask(n)] != 0).any())
            ]

    probe = Probe()
    wrapper.add_stage(probe)
    seen = []
    handle = model.conv1.register_forward_hook(
        lambda mod, inp, out: seen.append(str(out.dtype)))
    data = setup.data(dev)
    applied, scales, losses = False, [], []
    for _ in range(4):
        before = {n: p.detach().clone() for n, p in params.items()}
        scales.append(wrapper.grad_scale())
        losses.append(setup.step(model, wrapper, data))
        bad = _masked_nonzero(sp)
        f.expect(not bad, f'pruned weights are not +0.0 after a step in '
                 f'{bad}')
        applied = any(
            bool((params[n].detach() != before[n]).any()) for n in params)
        if applied:
            break
    handle.remove()
    f.results.update(
        setup.describe(),
        dtype=dtype,
        autocast_dtypes=sorted(set(seen)),
        steps=len(losses),
        step_applied=applied,
        losses=losses,
        loss_scales=scales + [wrapper.grad_scale()],
        loss_scaling=bool(wrapper.loss_scaler.is_enabled()),
        dense_grads_at_pruned=probe.dense_at_pruned,
        weight_dtypes=sorted({str(p.dtype)
                              for p in model.parameters()}))
    want = f'torch.{dtype}'
    f.expect(seen and set(seen) == {want},
             f'the forward ran in {sorted(set(seen))}, not {want}')
    f.expect(f.results['weight_dtypes'] == ['torch.float32'],
             f'weights are {f.results["weight_dtypes"]}, not float32')
    f.expect(applied, 'the loss scaler skipped all 4 steps')
    f.expect(probe.dense_at_pruned > 0,
             'the gradients were 0 at pruned weights already before the '
             'masking; the probe saw nothing to mask')
    f.expect(not probe.masked_left,
             f'gradients not masked during the step in '
             f'{sorted(set(probe.masked_left))}')
    bad = _state_nonzero(optimizer, sp)
    f.expect(not bad, f'momentum at pruned weights in {bad}')
    return f.done()
