# Copyright (c) gap_mm contributors. All rights reserved.
"""Check gap_mm on one NVIDIA GPU and write one JSON of the results.

``tools/misc/device_check.sh`` sets up the environment from a folder of
wheels and runs this script; ``--cpu`` rehearses every check that can run
on the CPU (CI runs it, ``tests/test_tools/test_device_check.py``). The
checks, in the order they run (docs/en/advanced_guides/gpu_check.md has
the JSON format and each check's fields):

* ``environment``: Python, torch, the GPU, nvcc, the installed stack;
* ``masks``: the engine's masks on device tensors (exact counts, the same
  masks as on the CPU, two optimizer steps and a GaP event);
* ``prune_event``: one GaP prune event on the device against the same on
  the CPU;
* ``masking_cost``: the masking of one step as a share of an R50-FPN-sized
  training step, and the masked step against the dense one;
* ``amp_fp16``, ``amp_bf16``: one ``GaPAmpOptimWrapper`` step, masks
  intact after it;
* ``mmcv_build``: mmcv built with its CUDA ops from the sdist in the wheels
  folder, within the time left (a rerun continues a build cut short);
* ``point_ops``: mmcv's CUDA point operators against the pure-torch ones;
* ``detector``, ``detector_amp``: a few iterations of the demo detector
  (``--amp`` for the second) and its checkpoint's masks.

Every check runs in a child process with a time limit, so a crash, a hang
or a poisoned CUDA context costs one check, not the run; the JSON is
rewritten after every check. The exit status is 1 when a check that ran
failed, else 0.

Usage::

    python tools/misc/device_check.py            # on a GPU
    python tools/misc/device_check.py --cpu      # the rehearsal
"""
import argparse
import collections
import copy
import datetime
import glob
import json
import math
import os
import os.path as osp
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
from typing import Callable, Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

FORMAT = 'gap_mm-device-check/1'
#: The sparsity every engine check prunes to.
SPARSITY = 0.8
#: Checks in the order they run, by the child process group that runs
#: them; ``environment`` and ``mmcv_build`` run in the main process.
GROUPS = collections.OrderedDict([
    ('environment', ['environment']),
    ('engine', ['masks', 'prune_event', 'masking_cost']),
    ('amp', ['amp_fp16', 'amp_bf16']),
    ('mmcv_build', ['mmcv_build']),
    ('point_ops', ['point_ops']),
    ('detector', ['detector']),
    ('detector_amp', ['detector_amp']),
])
#: Each child group's own time limit in seconds (the global budget may
#: cut it shorter).
GROUP_LIMITS = dict(
    engine=240, amp=150, point_ops=180, detector=240, detector_amp=180)
#: Seconds kept after the mmcv build for the checks that need it.
RESERVE_AFTER_BUILD = 170
#: The mmcv version of scripts/setup.sh, whose sdist the wheels folder
#: holds.
MMCV_VERSION = '2.1.0'
DEMO_CONFIG = 'configs/gap/cgap_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py'


# ------------------------------------------------------------ verdicts
def static_skip(name: str, args: argparse.Namespace) -> Optional[str]:
    """Why check ``name`` cannot run in this mode, known before it starts,
    or None."""
    if args.cpu and name == 'amp_fp16':
        return ('--cpu: mmengine\'s CPU autocast takes bfloat16 only, and '
                'float16 needs loss scaling, which is CUDA\'s')
    if args.cpu and name == 'point_ops':
        return ('--cpu: mmcv\'s point operators are CUDA kernels; the CPU '
                'code is what they are compared with')
    if args.cpu and name == 'detector_amp':
        return '--cpu: tools/train.py --amp needs a GPU'
    return None


class Skip(Exception):
    """The check cannot run here; the message says why."""


class CheckFailed(Exception):
    """The check ran and found a problem; ``results`` holds what it
    measured."""

    def __init__(self, message: str, results: Optional[dict] = None):
        super().__init__(message)
        self.results = results or {}


class Findings:
    """The results of one check and the problems it found on the way."""

    def __init__(self) -> None:
        self.results: Dict[str, object] = {}
        self.problems: List[str] = []

    def expect(self, ok: bool, problem: str) -> bool:
        """Record ``problem`` unless ``ok``; return ``ok``."""
        if not ok:
            self.problems.append(problem)
        return bool(ok)

    def done(self) -> dict:
        """The results, or :class:`CheckFailed` naming every problem."""
        if self.problems:
            raise CheckFailed('; '.join(self.problems), self.results)
        return self.results


def run_check(fn: Callable[[], dict]) -> dict:
    """Run one check function and turn its outcome into a JSON entry."""
    start = time.time()
    entry: Dict[str, object] = dict(status='passed', reason=None, results={})
    try:
        entry['results'] = fn()
    except Skip as err:
        entry.update(status='skipped', reason=str(err))
    except CheckFailed as err:
        entry.update(status='failed', reason=str(err), results=err.results)
    except Exception as err:  # noqa: B902  one failure must not stop the run
        entry.update(
            status='failed',
            reason=f'{type(err).__name__}: {err}',
            error=traceback.format_exc()[-4000:])
    entry['elapsed_s'] = round(time.time() - start, 3)
    return entry


def _stats(samples: List[float], digits: int = 6) -> dict:
    """Median, min and max of timings in seconds."""
    return dict(
        median_s=round(statistics.median(samples), digits),
        min_s=round(min(samples), digits),
        max_s=round(max(samples), digits),
        n=len(samples))


def _write_json(path: str, data: dict) -> None:
    """Write ``data`` whole or not at all."""
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1, sort_keys=False, default=str)
        f.write('\n')
    os.replace(tmp, path)


def _shown(path: str) -> str:
    """``path`` relative to the checkout when it is inside it."""
    rel = osp.relpath(path, ROOT)
    return path if rel.startswith('..') else rel


def _log(message: str) -> None:
    print(f'[device_check] {message}', flush=True)


# ----------------------------------------------------- engine (children)
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
            sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
            from device_check_model import SyntheticRetinaNet
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
        device_s=_stats(times['device']),
        cpu_s=_stats(times['cpu']),
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
        dense_step_s=_stats(steps['dense']),
        gap_step_s=_stats(steps['gap']),
        gap_over_dense_paired=round(
            statistics.median(
                g / d for g, d in zip(steps['gap'], steps['dense'])), 4),
        masking_s=_stats(masking),
        masking_share_pct=round(
            100 * statistics.median(masking) / dense_s, 3),
        target_share_pct=2.0)
    f.results['meets_target'] = f.results['masking_share_pct'] <= 2.0
    bad = _masked_nonzero(sp)
    f.expect(not bad, f'pruned weights are not 0 after the steps in {bad}')
    return f.done()


# ------------------------------------------------------------------ amp
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


# ------------------------------------------------------------- point ops
def check_point_ops(args: argparse.Namespace) -> dict:
    """mmcv's CUDA point operators against the pure-torch ones: the
    project's own comparison test, then the times of both at the
    PointNet++ SSG part-seg sizes."""
    import torch
    reason = _mmcv_cuda_problem()
    if reason:
        raise Skip(reason)
    f = Findings()
    test = ('tests/test_ops/test_point_ops.py::test_against_mmcv_cuda')
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         test],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120)
    f.results['comparison_test'] = test
    f.results['comparison_passed'] = proc.returncode == 0
    f.results['comparison_output'] = proc.stdout[-2000:]
    f.expect(proc.returncode == 0,
             f'{test} failed (pytest exit {proc.returncode})')

    sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
    from bench_point_ops import SA1, SA2, median_ms, sphere_points
    from bench_point_ops import stage_cases

    from gap_mm3d.ops import dispatch, point_ops_cpu
    gen = torch.Generator().manual_seed(0)
    tables = {}
    for impl, ops, device in (('mmcv_cuda', dispatch, 'cuda'),
                              ('torch_cuda', point_ops_cpu, 'cuda'),
                              ('torch_cpu', point_ops_cpu, 'cpu')):
        device = torch.device(device)
        rows = {}
        for stage, num, channels in ((SA1, 2048, 128), (SA2, 512, 256)):
            xyz = sphere_points(8, num, device, gen)
            cases = stage_cases(ops, xyz, stage['npoint'], stage['radius'],
                                stage['nsample'], stage['channels'],
                                channels, gen)
            times = median_ms([fn for _, fn in cases], 3, device)
            for (label, _), ms in zip(cases, times):
                rows[f'B8 N{num} {label}'] = round(ms, 3)
        tables[impl] = rows
    f.results['times_ms'] = tables
    f.results['mmcv_over_torch_cuda'] = {
        k: round(tables['mmcv_cuda'][k] / max(v, 1e-9), 3)
        for k, v in tables['torch_cuda'].items()
    }
    return f.done()


def _mmcv_cuda_problem() -> Optional[str]:
    """Why mmcv's CUDA ops cannot be used here, or None."""
    try:
        import mmcv
        import mmcv.ops
    except Exception as err:  # noqa: B902
        return f'mmcv.ops does not import ({type(err).__name__}: {err})'
    version = getattr(mmcv.ops, 'get_compiling_cuda_version', lambda: None)()
    if version in (None, 'not available'):
        return (f'mmcv {mmcv.__version__} was built without CUDA ops '
                f'(see mmcv_build)')
    return None


# -------------------------------------------------------------- detector
def check_detector(args: argparse.Namespace, amp: bool) -> dict:
    """A few iterations of the demo detector (C-GaP RetinaNet R18-FPN at
    80% ERK) through ``tools/train.py`` on generated shapes, evaluated by
    CocoMetric (``amp``: trained with ``--amp``, not evaluated), and its
    checkpoint's masks."""
    cuda = not args.cpu
    if cuda:
        reason = _mmcv_cuda_problem()
    else:
        try:
            import mmcv.ops  # noqa: F401
            reason = None
        except Exception as err:  # noqa: B902
            reason = f'mmcv.ops does not import ({type(err).__name__})'
    if reason:
        raise Skip(reason)
    for module in ('mmdet', 'pycocotools'):
        try:
            __import__(module)
        except Exception as err:  # noqa: B902
            raise Skip(f'{module} does not import: {err}')
    f = Findings()
    work = osp.join(args.work_dir, 'detector_amp' if amp else 'detector')
    data = osp.join(args.work_dir, 'synthetic_coco')
    env = _child_env(args)
    if not osp.isfile(osp.join(data, 'annotations', 'instances_val2017.json')):
        subprocess.run([
            sys.executable, 'tools/dataset_converters/gen_synthetic_coco.py',
            '--out', data, '--num-train', '48', '--num-val', '16',
            '--img-size', '160', '--seed', '0'
        ],
                       cwd=ROOT,
                       env=env,
                       check=True,
                       stdout=subprocess.DEVNULL,
                       timeout=120)
    period = 3 if cuda else 1
    iters = 8 * period + (6 if cuda else 2)  # K=4 x T x R=2, fine-tune
    batch = 8 if cuda else 2
    val_interval = iters if not amp else 10 * iters
    options = {
        'train_dataloader.dataset.data_root': data + '/',
        'train_dataloader.batch_size': batch,
        'train_dataloader.num_workers': 1,
        'val_dataloader.dataset.data_root': data + '/',
        'val_evaluator.ann_file': osp.join(data, 'annotations',
                                           'instances_val2017.json'),
        'train_cfg.max_iters': iters,
        'train_cfg.val_interval': val_interval,
        'param_scheduler.1.begin': iters - 4,
        'param_scheduler.1.end': iters,
        'param_scheduler.1.T_max': 4,
        'custom_hooks.0.schedule.period': period,
        # an untrained detector scores below 0.05: keep every box, so that
        # CocoMetric has results to evaluate
        'model.test_cfg.score_thr': 0.0,
        'default_hooks.logger.interval': 2,
        'default_hooks.checkpoint.interval': iters,
    }
    shutil.rmtree(work, ignore_errors=True)
    cmd = [sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir', work]
    if amp:
        cmd.append('--amp')
    cmd += ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]
    f.results.update(
        config=DEMO_CONFIG,
        iters=iters,
        batch=batch,
        gap_period=period,
        amp=amp,
        command=' '.join(cmd[1:]))
    start = time.time()
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=max(30, args.child_limit - 60))
    f.results['train_s'] = round(time.time() - start, 3)
    if proc.returncode != 0:
        f.results['output_tail'] = proc.stdout[-3000:]
        raise CheckFailed(f'tools/train.py exited {proc.returncode}',
                          f.results)
    scalars = sorted(glob.glob(osp.join(work, '*', 'vis_data',
                                        'scalars.json')))
    records = []
    if scalars:
        with open(scalars[-1]) as fp:
            records = [json.loads(line) for line in fp if line.strip()]
    losses = [r['loss'] for r in records if 'loss' in r]
    f.results['losses'] = losses
    f.expect(losses and all(math.isfinite(v) for v in losses),
             f'the logged losses are missing or not finite: {losses}')
    if not amp:
        metrics = [r for r in records if 'coco/bbox_mAP' in r]
        f.results['bbox_mAP'] = (metrics[-1]['coco/bbox_mAP']
                                 if metrics else None)
        f.expect(metrics, 'no coco/bbox_mAP was logged')
    f.results.update(_checkpoint_report(work, amp, f))
    return f.done()


def _checkpoint_report(work: str, amp: bool, f: Findings) -> dict:
    """Sparsity and masked zeros of the run's last checkpoint."""
    from gap_mm.checkpoint import (load_checkpoint, read_state,
                                   split_checkpoint, verify_masked_zero)
    with open(osp.join(work, 'last_checkpoint')) as fp:
        path = fp.read().strip()
    ckpt = load_checkpoint(path)
    state_dict, _ = split_checkpoint(ckpt, path)
    report = verify_masked_zero(state_dict, read_state(ckpt, path))
    numel = sum(r['numel'] for r in report.values())
    pruned = sum(r['masked'] for r in report.values())
    nonzero = sum(r['nonzero_masked'] for r in report.values())
    out = dict(
        checkpoint=_shown(path),
        masked_layers=len(report),
        sparsity_of_masked_layers=pruned / max(1, numel),
        nonzero_masked=nonzero)
    f.expect(report, 'the checkpoint holds no masks')
    f.expect(nonzero == 0, f'{nonzero} pruned weights are not 0')
    f.expect(
        abs(out['sparsity_of_masked_layers'] - SPARSITY) < 0.01,
        f'sparsity {out["sparsity_of_masked_layers"]:.4f}, not {SPARSITY}')
    if amp:
        scaler = 'loss_scaler' in (ckpt.get('optimizer') or {})
        out['checkpoint_has_loss_scaler'] = scaler
        f.expect(scaler, 'the optimizer state has no loss_scaler: was the '
                 'AMP wrapper used?')
    return out


# ------------------------------------------------------- child processes
def child_main(args: argparse.Namespace) -> int:
    """Run one group of checks and write their entries to
    ``args.result`` after each."""
    out: Dict[str, dict] = {}
    setup: List[EngineSetup] = []

    def engine():
        if not setup:  # the AMP steps hook the plain-torch model's stem
            setup.append(
                EngineSetup(args, 'synthetic' if args.child ==
                            'amp' else args.model))
        return setup[0]

    def needs_device(fn):
        def wrapped():
            if not args.cpu:
                import torch
                if not torch.cuda.is_available():
                    raise Skip('no CUDA device')
            return fn()

        return wrapped

    checks = {
        'masks': lambda: check_masks(engine()),
        'prune_event': lambda: check_prune_event(engine()),
        'masking_cost': lambda: check_masking_cost(engine()),
        'amp_fp16': lambda: check_amp(engine, 'float16'),
        'amp_bf16': lambda: check_amp(engine, 'bfloat16'),
        'point_ops': lambda: check_point_ops(args),
        'detector': lambda: check_detector(args, amp=False),
        'detector_amp': lambda: check_detector(args, amp=True),
    }
    for name in GROUPS[args.child]:
        if name in args.skip or static_skip(name, args):
            continue  # the main process records these
        print(f'{name}: running', flush=True)
        entry = run_check(needs_device(checks[name]))
        out[name] = entry
        _write_json(args.result, out)
        print(f'{name}: {entry["status"]}'
              f'{" (" + entry["reason"] + ")" if entry["reason"] else ""}'
              f' in {entry["elapsed_s"]:.1f} s', flush=True)
    return 0


def _child_env(args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    env['PYTHONUNBUFFERED'] = '1'
    if args.cpu:
        env['CUDA_VISIBLE_DEVICES'] = ''
    return env


class Orchestrator:
    """Runs the groups in order within the budget and keeps the JSON."""

    def __init__(self, args: argparse.Namespace, argv: List[str]) -> None:
        self.args = args
        self.argv = argv
        self.start = time.time()
        self.deadline = args.deadline or self.start + args.budget
        self.child: Optional[subprocess.Popen] = None
        self.build: Optional['MmcvBuild'] = None
        os.makedirs(args.work_dir, exist_ok=True)
        self.log = open(osp.join(args.work_dir, 'device_check.log'), 'a')
        self.data = dict(
            format=FORMAT,
            mode='cpu' if args.cpu else 'cuda',
            started=datetime.datetime.now().astimezone().isoformat(
                timespec='seconds'),
            finished=None,
            elapsed_s=None,
            budget_s=round(self.deadline - self.start, 1),
            command=' '.join([osp.relpath(__file__, ROOT)] + argv),
            ok=None,
            summary={},
            checks=collections.OrderedDict())

    def left(self) -> float:
        return self.deadline - time.time()

    def record(self, name: str, entry: dict) -> None:
        self.data['checks'][name] = entry
        counts = collections.Counter(
            e['status'] for e in self.data['checks'].values())
        self.data['summary'] = {
            s: counts.get(s, 0)
            for s in ('passed', 'failed', 'skipped')
        }
        self.data['ok'] = counts.get('failed', 0) == 0
        self.data['elapsed_s'] = round(time.time() - self.start, 3)
        _write_json(self.args.out, self.data)
        reason = f': {entry["reason"]}' if entry.get('reason') else ''
        _log(f'{time.time() - self.start:6.1f} s  {name}: '
             f'{entry["status"]}{reason}')

    def skip(self, name: str, reason: str) -> None:
        self.record(name,
                    dict(status='skipped', reason=reason, results={},
                         elapsed_s=0.0))

    def run(self) -> int:
        """Run every group; return the exit status (1 when a check
        failed, or the run itself broke)."""
        try:
            self._run_groups()
        except Exception:  # noqa: B902  keep the JSON of what did run
            self.data['error'] = traceback.format_exc()[-4000:]
            self.data['ok'] = False
            _log(f'the run broke:\n{self.data["error"]}')
        finally:
            for proc in (self.child, self.build and self.build.proc):
                if proc is not None and proc.poll() is None:
                    _kill(proc)
        self.data['finished'] = datetime.datetime.now().astimezone(
        ).isoformat(timespec='seconds')
        self.record_summary()
        return 0 if self.data['ok'] else 1

    def _run_groups(self) -> None:
        if self.args.setup_json and osp.isfile(self.args.setup_json):
            with open(self.args.setup_json) as f:
                self.record('setup', json.load(f))
        build = None
        for group, names in GROUPS.items():
            wanted = [n for n in names if n not in self.args.skip]
            for name in names:
                if name in self.args.skip:
                    self.skip(name, 'left out with --skip')
            if not wanted:
                continue
            if group == 'environment':
                self.record('environment', run_check(self.environment))
            elif group == 'mmcv_build':
                build = self.build = build or MmcvBuild(self)
                self.record('mmcv_build', run_check(build.finish))
            elif self.left() < 20:
                for name in wanted:
                    self.skip(name, f'the time budget ran out '
                              f'({max(0, self.left()):.0f} s left)')
            else:
                static = {n: static_skip(n, self.args) for n in wanted}
                for name in [n for n in wanted if static[n]]:
                    self.skip(name, static[name])
                wanted = [n for n in wanted if not static[n]]
                if not wanted:
                    continue
                if group == 'amp' and 'mmcv_build' not in self.args.skip:
                    # it compiles while the (GPU-bound) AMP steps run
                    build = self.build = MmcvBuild(self)
                    if (build.problem is None and
                            self.left() - RESERVE_AFTER_BUILD > 60):
                        build.begin()
                self.run_group(group, wanted)

    def record_summary(self) -> None:
        _write_json(self.args.out, self.data)
        _log(f'done in {time.time() - self.start:.1f} s: '
             f'{self.data["summary"]}; results in {self.args.out}')

    def run_group(self, group: str, names: List[str]) -> None:
        """Run a child process for ``group`` and record its checks."""
        own = GROUP_LIMITS[group]
        limit = min(own, self.left() - 10)
        fd, result = tempfile.mkstemp(
            prefix=f'{group}-', suffix='.json', dir=self.args.work_dir)
        os.close(fd)
        os.unlink(result)
        cmd = [
            sys.executable, '-u',
            osp.abspath(__file__), *self.argv, '--child', group, '--result',
            result, '--child-limit',
            str(int(limit))
        ]
        _log(f'{time.time() - self.start:6.1f} s  {group}: {names} '
             f'(limit {limit:.0f} s)')
        tail = collections.deque(maxlen=30)
        self.child = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=_child_env(self.args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors='replace',
            start_new_session=True)

        def pump(stream):
            for line in stream:
                tail.append(line)
                self.log.write(f'[{group}] {line}')
                if self.args.verbose or re.match(r'^\w+: ', line):
                    print(f'  [{group}] {line}', end='', flush=True)

        reader = threading.Thread(
            target=pump, args=(self.child.stdout, ), daemon=True)
        reader.start()
        timed_out = False
        try:
            rc = self.child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(self.child)
            rc = self.child.returncode
        reader.join(5)
        self.log.flush()
        self.child = None
        entries = {}
        if osp.isfile(result):
            with open(result) as f:
                entries = json.load(f)
            os.unlink(result)
        for name in names:
            if name in entries:
                self.record(name, entries[name])
            elif timed_out and limit < own:
                self.skip(name, f'the time budget ran out: the {group} '
                          f'checks had {limit:.3g} s')
            else:
                what = (f'did not finish within its {limit:.3g} s limit'
                        if timed_out else
                        f'its process ended with exit status {rc}')
                self.record(
                    name,
                    dict(
                        status='failed',
                        reason=f'{name} {what}',
                        results={},
                        error=''.join(tail)[-3000:],
                        elapsed_s=None))

    def interrupt(self, signum, frame) -> None:
        """SIGTERM / SIGINT: stop the child and the mmcv build, record,
        write, exit 1."""
        for proc in (self.child, self.build and self.build.proc):
            if proc is not None and proc.poll() is None:
                _kill(proc)
        self.data['interrupted'] = f'signal {signum}'
        self.data['ok'] = False
        self.data['finished'] = datetime.datetime.now().astimezone(
        ).isoformat(timespec='seconds')
        self.record_summary()
        os._exit(1)

    # -------------------------------------------------------- in-process
    def environment(self) -> dict:
        """What this machine has; fails only when a GPU run finds no
        CUDA device."""
        import torch
        f = Findings()
        r = f.results
        r.update(
            python=sys.version.split()[0],
            executable=sys.executable,
            platform=platform.platform(),
            cpu_count=os.cpu_count(),
            torch=torch.__version__,
            torch_cuda=torch.version.cuda,
            torch_threads=torch.get_num_threads(),
            cuda_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            r.update(
                gpu=props.name,
                gpu_count=torch.cuda.device_count(),
                capability='{}.{}'.format(*torch.cuda.get_device_capability(
                    0)),
                gpu_memory_gib=round(props.total_memory / 2**30, 1),
                bf16_supported=torch.cuda.is_bf16_supported(),
                cudnn=torch.backends.cudnn.version())
        r['packages'] = _versions([
            'numpy', 'mmengine', 'mmcv', 'mmdet', 'mmdet3d', 'pycocotools',
            'safetensors', 'setuptools', 'opencv-python-headless',
            'opencv-python', 'scipy', 'shapely', 'pytest'
        ])
        r['mmcv_ops'] = _probe_mmcv_ops(self.args)
        sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
        from device_wheels import BASE, missing, read_lines
        r['base_missing'] = missing(read_lines(BASE))
        if not self.args.cpu:
            f.expect(
                not r['base_missing'], f'the machine lacks {r["base_missing"]}'
                f' of tools/misc/{BASE} (prepare the wheels with --with-base)')
        r['nvcc'] = _nvcc()
        r['git'] = _git()
        if not self.args.cpu:
            f.expect(torch.cuda.is_available(),
                     'torch sees no CUDA device (torch.version.cuda = '
                     f'{torch.version.cuda}); the GPU checks are skipped')
        return f.done()


def _kill(proc: subprocess.Popen) -> None:
    """End a child and everything it started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def _versions(names: List[str]) -> Dict[str, Optional[str]]:
    from importlib import metadata
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _probe_mmcv_ops(args: argparse.Namespace) -> str:
    """'cuda <version>', 'cpu only' or why mmcv.ops does not import, asked
    of a fresh interpreter."""
    code = ('import mmcv.ops as o; '
            'print(o.get_compiling_cuda_version())')
    try:
        proc = subprocess.run([sys.executable, '-c', code],
                              cwd=ROOT,
                              env=_child_env(args),
                              capture_output=True,
                              text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        return 'unknown: import mmcv.ops took over 120 s'
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ['?'])[-1]
        return f'does not import: {last[:300]}'
    version = proc.stdout.strip()
    return 'cpu only' if version == 'not available' else f'cuda {version}'


def _cuda_home() -> Optional[str]:
    """The CUDA toolkit folder to build with: $CUDA_HOME / $CUDA_PATH, then
    torch's guess, /usr/local/cuda, /usr/local/cuda-*, and the folder above
    the nvcc on PATH; the first that holds ``bin/nvcc`` and
    ``include/cuda_runtime.h`` (an nvcc on PATH may be a wrapper script
    elsewhere)."""
    candidates = [os.environ.get('CUDA_HOME'), os.environ.get('CUDA_PATH')]
    try:
        from torch.utils.cpp_extension import CUDA_HOME
        candidates.append(CUDA_HOME)
    except Exception:  # noqa: B902
        pass
    candidates.append('/usr/local/cuda')
    candidates += sorted(glob.glob('/usr/local/cuda-*'), reverse=True)
    nvcc = shutil.which('nvcc')
    if nvcc:
        candidates.append(osp.dirname(osp.dirname(osp.realpath(nvcc))))
    for home in candidates:
        if home and osp.isfile(osp.join(home, 'bin', 'nvcc')) and osp.isfile(
                osp.join(home, 'include', 'cuda_runtime.h')):
            return home
    return None


def _nvcc() -> dict:
    """The CUDA compiler and toolkit torch's extension builder is given."""
    home = _cuda_home()
    path = osp.join(home, 'bin', 'nvcc') if home else shutil.which('nvcc')
    if not path:
        return dict(path=None, version=None, cuda_home=None)
    try:
        text = subprocess.run([path, '--version'],
                              capture_output=True,
                              text=True,
                              timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        text = ''
    match = re.search(r'release (\d+\.\d+)', text)
    return dict(
        path=path, version=match.group(1) if match else None, cuda_home=home)


def _git() -> dict:
    def git(*cmd):
        try:
            return subprocess.run(['git', *cmd],
                                  cwd=ROOT,
                                  capture_output=True,
                                  text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ''

    return dict(
        commit=git('rev-parse', '--short', 'HEAD') or None,
        dirty=bool(git('status', '--porcelain', '--untracked-files=no')))


# ------------------------------------------------------------ mmcv build
class MmcvBuild:
    """Build mmcv with its CUDA ops from the sdist in the wheels folder.

    The sdist is unpacked once into ``<work-dir>/mmcv-<version>`` and built
    there with ninja, so a build cut short by the time limit leaves its
    object files, and the next run continues from them. A finished build
    is installed with the mmdet3d packages
    (``tools/misc/device_requirements_3d.txt``), which need mmcv.ops.
    """

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch
        self.args = orch.args
        self.proc: Optional[subprocess.Popen] = None
        self.results: Dict[str, object] = {}
        self.begun = None
        self.installed = False
        self.problem = self._problem()

    def _problem(self) -> Optional[str]:
        """Why no build is started, or None."""
        env = self.orch.data['checks'].get('environment', {})
        ops = env.get('results', {}).get('mmcv_ops', '')
        self.results['mmcv_ops_before'] = ops
        if ops.startswith('cuda'):
            self.installed = True
            return 'mmcv.ops with CUDA kernels is installed already'
        if self.args.cpu:
            return ('--cpu: mmcv\'s CUDA ops are built on a GPU machine '
                    f'(here mmcv.ops: {ops or "not probed"})')
        import torch
        if not torch.cuda.is_available():
            return 'no CUDA device'
        if not self.args.wheels:
            return 'no --wheels folder with the mmcv sdist'
        sdists = glob.glob(
            osp.join(self.args.wheels, f'mmcv-{MMCV_VERSION}.tar.gz'))
        if not sdists:
            return f'no mmcv-{MMCV_VERSION}.tar.gz in {self.args.wheels}'
        self.sdist = sdists[0]
        nvcc = env.get('results', {}).get('nvcc') or _nvcc()
        self.results['nvcc'] = nvcc
        if not nvcc.get('path') or not nvcc.get('cuda_home'):
            return ('no CUDA toolkit with nvcc and its headers found '
                    '(CUDA_HOME, /usr/local/cuda*, PATH)')
        if (nvcc.get('version') and torch.version.cuda and
                nvcc['version'].split('.')[0] !=
                torch.version.cuda.split('.')[0]):
            return (f'nvcc {nvcc["version"]} and torch\'s CUDA '
                    f'{torch.version.cuda} differ in the major version')
        return None

    def _source(self) -> str:
        src = osp.join(self.args.work_dir, f'mmcv-{MMCV_VERSION}')
        if not osp.isfile(osp.join(src, 'setup.py')):
            with tarfile.open(self.sdist) as tar:
                if hasattr(tarfile, 'data_filter'):
                    tar.extractall(self.args.work_dir, filter='data')
                else:
                    tar.extractall(self.args.work_dir)
        return src

    def _objects(self) -> dict:
        src = osp.join(self.args.work_dir, f'mmcv-{MMCV_VERSION}')
        csrc = osp.join(src, 'mmcv', 'ops', 'csrc', 'pytorch')
        sources = [
            p for pattern in ('*.cpp', 'cpu/*.cpp', 'cuda/*.cu', 'cuda/*.cpp')
            for p in glob.glob(osp.join(csrc, pattern))
        ]
        objects = glob.glob(
            osp.join(src, 'build', '**', '*.o'), recursive=True)
        return dict(objects_compiled=len(objects), objects_total=len(sources))

    def begin(self) -> None:
        """Start the build in the background."""
        import torch
        src = self._source()
        os.makedirs(osp.join(self.args.work_dir, 'mmcv-dist'), exist_ok=True)
        cap = '{}.{}'.format(*torch.cuda.get_device_capability(0))
        jobs = self.args.build_jobs or os.cpu_count() or 4
        env = _child_env(self.args)
        env.update(
            MMCV_WITH_OPS='1',
            FORCE_CUDA='1',
            TORCH_CUDA_ARCH_LIST=cap,
            MAX_JOBS=str(jobs),
            PIP_NO_INDEX='1',
            PIP_DISABLE_PIP_VERSION_CHECK='1')
        env['CUDA_HOME'] = self.results['nvcc']['cuda_home']
        env['PATH'] = (osp.join(env['CUDA_HOME'], 'bin') + os.pathsep +
                       env.get('PATH', ''))
        ninja = _ninja_dir()
        if ninja:
            env['PATH'] = ninja + os.pathsep + env.get('PATH', '')
        self.results.update(
            sdist=osp.basename(self.sdist),
            source=_shown(src),
            arch=cap,
            jobs=jobs,
            ninja=bool(ninja))
        self.log_path = osp.join(self.args.work_dir, 'mmcv-build.log')
        self.results['log'] = _shown(self.log_path)
        self.results.update(
            {f'{k}_before': v
             for k, v in self._objects().items()})
        log = open(self.log_path, 'a')
        cmd = [
            sys.executable, '-m', 'pip', 'wheel', '--no-build-isolation',
            '--no-deps', '--no-index', '-w',
            osp.join(self.args.work_dir, 'mmcv-dist'), src
        ]
        _log(f'{time.time() - self.orch.start:6.1f} s  mmcv_build: started '
             f'in the background for sm_{cap.replace(".", "")} with '
             f'{jobs} jobs (log {self.results["log"]})')
        self.begun = time.time()
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True)

    def finish(self) -> dict:
        """Wait for the build within the time left, then install it."""
        if self.problem and not self.installed:
            raise Skip(self.problem)
        if not self.installed:
            self._build()
        self._install_3d()
        return self.results

    def _build(self) -> None:
        if self.proc is None:
            if self.orch.left() - RESERVE_AFTER_BUILD < 60:
                raise Skip(f'too little time left for the mmcv build '
                           f'({self.orch.left():.0f} s)')
            self.begin()
        if self.args.mmcv_build_limit:
            wait = self.args.mmcv_build_limit - (time.time() - self.begun)
        else:
            wait = self.orch.left() - RESERVE_AFTER_BUILD
        self.results['limit_s'] = round(time.time() - self.begun + wait)
        try:
            rc = self.proc.wait(timeout=max(1, wait))
        except subprocess.TimeoutExpired:
            _kill(self.proc)
            self.results.update(self._objects())
            self.results['build_s'] = round(time.time() - self.begun, 1)
            raise Skip(
                f'the mmcv build did not finish in the '
                f'{self.results["limit_s"]} s it had '
                f'({self.results["objects_compiled"]} of '
                f'{self.results["objects_total"]} objects compiled); run '
                f'the check again on this machine to continue it')
        self.results.update(self._objects())
        self.results['build_s'] = round(time.time() - self.begun, 1)
        if rc != 0:
            with open(self.log_path, errors='replace') as f:
                tail = f.read()[-3000:]
            raise CheckFailed(f'the mmcv build exited {rc}',
                              dict(self.results, log_tail=tail))
        wheels = sorted(
            glob.glob(
                osp.join(self.args.work_dir, 'mmcv-dist', 'mmcv-*.whl')))
        self._pip([wheels[-1]])
        self.results['wheel'] = osp.basename(wheels[-1])
        self.results['mmcv_ops_after'] = _probe_mmcv_ops(self.args)
        if not str(self.results['mmcv_ops_after']).startswith('cuda'):
            raise CheckFailed(
                'the built mmcv has no CUDA ops: '
                f'{self.results["mmcv_ops_after"]}', self.results)

    def _install_3d(self) -> None:
        """Install mmdet3d and what gap_mm3d imports, which need mmcv.ops,
        from the wheels folder, unless mmdet3d is there."""
        if _versions(['mmdet3d'])['mmdet3d'] or not self.args.wheels:
            return
        self._pip([
            '--find-links', self.args.wheels, '-r',
            osp.join(ROOT, 'tools', 'misc', 'device_requirements_3d.txt')
        ])
        self.results['installed_3d'] = True

    def _pip(self, extra: List[str]) -> None:
        cmd = [
            sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
            '--no-index', '--disable-pip-version-check', *extra
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode:
            raise CheckFailed(
                f'pip install {" ".join(extra)} exited {proc.returncode}',
                dict(self.results, pip_output=proc.stderr[-2000:]))


def _ninja_dir() -> Optional[str]:
    """The folder of a ninja executable, for torch's parallel builds."""
    path = shutil.which('ninja')
    if path:
        return osp.dirname(path)
    try:
        import ninja
        return ninja.BIN_DIR
    except (ImportError, AttributeError):
        return None


# ------------------------------------------------------------------ CLI
def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--cpu',
        action='store_true',
        help='rehearse on the CPU: every check that can run there')
    parser.add_argument(
        '--out',
        help='the JSON of results (default: <work-dir>/device_check.json)')
    parser.add_argument(
        '--work-dir',
        default=osp.join(ROOT, 'work_dirs', 'device_check'),
        help='logs, the mmcv build, the detector runs')
    parser.add_argument(
        '--budget',
        type=float,
        default=460,
        help='seconds for the whole run (default 460)')
    parser.add_argument(
        '--deadline',
        type=float,
        help='the Unix time the run must end by (overrides --budget)')
    parser.add_argument(
        '--wheels', help='the folder of wheels with the mmcv sdist')
    parser.add_argument('--setup-json', help=argparse.SUPPRESS)
    parser.add_argument(
        '--model',
        choices=['auto', 'synthetic', 'mmdet'],
        default='auto',
        help='the R50-FPN of the engine checks: auto takes mmdet\'s Faster '
        'R-CNN on a GPU where mmcv\'s CUDA ops import, else the '
        'plain-torch RetinaNet')
    parser.add_argument(
        '--width',
        type=int,
        help='stem width of the plain-torch model (default: 64 on a GPU, '
        '16 with --cpu)')
    parser.add_argument('--size', type=int, help='image side (512 / 128)')
    parser.add_argument('--batch', type=int, help='images per step (2 / 1)')
    parser.add_argument(
        '--rounds', type=int, help='timed rounds per figure (5 / 3)')
    parser.add_argument(
        '--skip',
        default='',
        help='comma-separated checks to leave out, e.g. detector_amp')
    parser.add_argument(
        '--mmcv-build-limit',
        type=float,
        help='seconds for the mmcv build (default: what the budget leaves '
        f'after {RESERVE_AFTER_BUILD} s for the checks that need it)')
    parser.add_argument(
        '--build-jobs', type=int, help='parallel compile jobs (all cores)')
    parser.add_argument(
        '--verbose', action='store_true', help='echo every child line')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--result', help=argparse.SUPPRESS)
    parser.add_argument(
        '--child-limit', type=float, default=600, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(',') if s.strip()}
    known = {n for names in GROUPS.values() for n in names}
    unknown = args.skip - known
    if unknown:
        parser.error(f'--skip names unknown checks {sorted(unknown)}; the '
                     f'checks are {sorted(known)}')
    args.work_dir = osp.abspath(args.work_dir)
    args.out = osp.abspath(args.out or osp.join(args.work_dir,
                                                'device_check.json'))
    if args.wheels:
        args.wheels = osp.abspath(args.wheels)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    orch = Orchestrator(args, argv)
    signal.signal(signal.SIGTERM, orch.interrupt)
    signal.signal(signal.SIGINT, orch.interrupt)
    _log(f'{orch.data["mode"]} run, budget {orch.left():.0f} s, results in '
         f'{args.out}')
    return orch.run()


if __name__ == '__main__':
    sys.exit(main())
