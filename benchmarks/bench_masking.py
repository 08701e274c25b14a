# Copyright (c) gap_mm contributors. All rights reserved.
"""Cost of GaP masking on mmdet's Faster R-CNN R50-FPN, on the CPU.

Four measurements, each printed as a table of ratios taken side by side in
one run:

1. Train-step time with GaP masking against the same dense step (batch 2,
   512x512 by default), interleaved; the ratio to dense is the median of
   the per-round ratios. Besides ours (a bitwise AND with int8 keep words),
   three alternatives are timed: ``masked_fill_`` with a bool mask,
   ``mul_`` by the bool mask and ``mul_`` by a float mask.
2. One prune event at 80% (global magnitude top-k over every conv and linear
   weight) against per-layer ``np.percentile`` (the reference code's way)
   and ``torch.nn.utils.prune.global_unstructured``.
3. Mask memory per weight, in memory and in the checkpoint, against
   ``torch.nn.utils.prune`` (which keeps ``weight_orig`` and a float mask).
4. The masking alone (gradients before and weights after a step) with cold
   caches, for each masking method, as a share of the dense step: whole
   steps vary by a few % from run to run here, the masking does not.

Usage::

    python benchmarks/bench_masking.py            # the standard condition
    python benchmarks/bench_masking.py --steps 3 --size 320   # quicker
    # the demo's small detector against its dense twin:
    python benchmarks/bench_masking.py --skip-prune \
        --config configs/gap/cgap_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py \
        --size 160 --batch 8
"""
import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.utils.prune as tprune
from mmengine.hub import get_config
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope

import gap_mm  # noqa: F401
from gap_mm.engine import GaPOptimWrapper
from gap_mm.sparsity import MagnitudeSparsifier, select_prunable


class _CachedMaskSparsifier(MagnitudeSparsifier):
    """Alternative masking: a per-layer mask cached once the masks are set
    (the benchmark never prunes again) and applied by :meth:`_apply`."""

    def _mask(self, name):
        raise NotImplementedError

    def _apply(self, tensor, mask):
        raise NotImplementedError

    def _masks(self):
        if not hasattr(self, '_cache'):
            self._cache = {n: self._mask(n) for n in self._words}
        return self._cache

    @torch.no_grad()
    def apply_masks_(self):
        for name, mask in self._masks().items():
            self._apply(self.params[name], mask)

    @torch.no_grad()
    def mask_grads_(self):
        for name, mask in self._masks().items():
            if self.params[name].grad is not None:
                self._apply(self.params[name].grad, mask)


class MaskedFillSparsifier(_CachedMaskSparsifier):
    """``masked_fill_`` with a bool pruned-mask (1 byte per weight)."""

    def _mask(self, name):
        return self.pruned_mask(name)

    def _apply(self, tensor, mask):
        tensor.masked_fill_(mask, 0)


class BoolMulSparsifier(_CachedMaskSparsifier):
    """``mul_`` by the bool keep-mask (1 byte per weight; leaves -0.0)."""

    def _mask(self, name):
        return self.keep_mask(name)

    def _apply(self, tensor, mask):
        tensor.mul_(mask)


class FloatMulSparsifier(BoolMulSparsifier):
    """``mul_`` by a float keep-mask (4 bytes per weight)."""

    def _mask(self, name):
        return self.keep_mask(name).float()


VARIANTS = [  # label, class, mask bytes per weight
    ('gap (int8 keep word, bitwise AND)', MagnitudeSparsifier, 1),
    ('masked_fill_ (bool)', MaskedFillSparsifier, 1),
    ('mul_ (bool)', BoolMulSparsifier, 1),
    ('mul_ (float)', FloatMulSparsifier, 4),
]

DEFAULT_CONFIG = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'


def build_detector(size, config=DEFAULT_CONFIG, batch=2):
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.config import Config
    from mmengine.structures import InstanceData
    init_default_scope('mmdet')
    cfg = get_config(config) if '::' in config else Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.frozen_stages = -1  # as configs/gap_faster_rcnn.py does
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    num_classes = (cfg.model.get('bbox_head')
                   or cfg.model.roi_head.bbox_head).num_classes
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(
            torch.randint(
                0, 255, (3, size, size), generator=gen, dtype=torch.uint8))
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1.0, 1.0),
                pad_shape=(size, size)))
        xy = torch.rand(4, 2, generator=gen) * size * 0.6
        wh = torch.rand(4, 2, generator=gen) * size * 0.3 + 16
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1),
            labels=torch.randint(0, num_classes, (4, ), generator=gen))
        samples.append(sample)
    data = dict(inputs=inputs, data_samples=samples)
    return model, data


def time_steps(model, data, wrappers, steps):
    """Interleave one step of each wrapper per round.

    Returns:
        tuple[dict, dict]: Median seconds per wrapper, and the median over
        rounds of each wrapper's time divided by the first wrapper's (dense)
        in the same round: paired, so a drift of the machine's speed across
        the run cancels.
    """
    times = {name: [] for name in wrappers}
    for round_idx in range(steps + 1):
        for name, wrapper in wrappers.items():
            start = time.perf_counter()
            model.train_step(data, wrapper)
            if round_idx:  # round 0 warms up
                times[name].append(time.perf_counter() - start)
    base = times[next(iter(wrappers))]
    medians = {
        name: (statistics.median(ts), min(ts), max(ts))
        for name, ts in times.items()
    }
    ratios = {
        name: statistics.median(t / b for t, b in zip(ts, base))
        for name, ts in times.items()
    }
    return medians, ratios


def bench_step(size, steps, sparsity, config, batch):
    model, data = build_detector(size, config, batch)
    params = select_prunable(model)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    wrappers = {'dense': OptimWrapper(optimizer)}
    bytes_per = {'dense': 0}
    for label, cls, mask_bytes in VARIANTS:
        bytes_per[label] = mask_bytes
        sp = cls(params, sparsity, 'global')
        sp.prune([0])
        wrapper = GaPOptimWrapper(optimizer)
        wrapper.attach_sparsifier(sp)
        wrappers[label] = wrapper
    n = sum(p.numel() for p in params.values())
    print(f'\n## Train step, {model.__class__.__name__} from {config}, '
          f'batch {batch}, {size}x{size}, '
          f'{n / 1e6:.2f} M prunable weights all masked at {sparsity:.0%}, '
          f'SGD momentum; median [min, max] of {steps} interleaved steps '
          f'after a warm-up, {torch.get_num_threads()} threads')
    medians, ratios = time_steps(model, data, wrappers, steps)
    print('| masking | step (s) | vs dense (paired) | mask bytes / weight |')
    print('|---|---|---|---|')
    for name, (sec, low, high) in medians.items():
        print(f'| {name} | {sec:.3f} [{low:.3f}, {high:.3f}] | '
              f'{ratios[name]:.3f}x | {bytes_per[name]} |')
    return model, medians['dense'][0]


def bench_primitives(model, sparsity, repeats=15, step_seconds=None):
    """Time the masking itself (gradients before + weights after a step),
    with the CPU caches flushed first as they are after backward. Far less
    noisy than whole steps, whose run-to-run spread here is a few %."""
    params = select_prunable(model)
    for p in params.values():
        p.grad = torch.randn_like(p)
    flush = torch.empty(64 * 2**20)
    sparsifiers = []
    for _, cls, _ in VARIANTS:
        sp = cls(params, sparsity, 'global')
        sp.prune([0])
        sp.mask_grads_()  # builds the cached masks of the alternatives
        sp.apply_masks_()
        sparsifiers.append(sp)
    # Interleaved, like the steps: every variant sees the same machine.
    times = [[] for _ in VARIANTS]
    for round_idx in range(repeats + 1):  # round 0 warms up
        for sp, ts in zip(sparsifiers, times):
            flush.fill_(1.0)
            start = time.perf_counter()
            sp.mask_grads_()
            sp.apply_masks_()
            if round_idx:
                ts.append(time.perf_counter() - start)
    rows = [(label, statistics.median(ts), mask_bytes, min(ts), max(ts))
            for (label, _, mask_bytes), ts in zip(VARIANTS, times)]
    n = sum(p.numel() for p in params.values())
    print(f'\n## Masking per step (gradients + weights) over {n / 1e6:.2f} M '
          f'weights, cold caches, median [min, max] of {repeats} interleaved '
          f'after a warm-up, {torch.get_num_threads()} threads')
    head = '| masking | ms per step | mask bytes / weight |'
    if step_seconds:
        head += f' share of a {step_seconds:.2f} s dense step |'
    print(head)
    print('|---|---|---|' + ('---|' if step_seconds else ''))
    for label, sec, mask_bytes, low, high in rows:
        line = (f'| {label} | {sec * 1e3:.1f} [{low * 1e3:.1f}, '
                f'{high * 1e3:.1f}] | {mask_bytes} |')
        if step_seconds:
            line += f' {100 * sec / step_seconds:.2f}% |'
        print(line)


def bench_prune(model, sparsity, repeats, note):
    params = select_prunable(model)
    n = sum(p.numel() for p in params.values())
    originals = {k: v.detach().clone() for k, v in params.items()}

    def restore():
        with torch.no_grad():
            for k, v in params.items():
                v.copy_(originals[k])

    def ours():
        MagnitudeSparsifier(params, sparsity, 'global').prune([0])

    def ours_uniform():
        MagnitudeSparsifier(params, sparsity, 'uniform').prune([0])

    def percentile():  # the reference: per layer, np.percentile and '>'
        for p in params.values():
            w = p.detach().numpy()
            thr = np.percentile(np.abs(w), sparsity * 100)
            mask = (np.abs(w) > thr).astype(np.float32)
            p.data.mul_(torch.from_numpy(mask))

    def torch_prune():
        modules = [(m, 'weight') for m in model.modules()
                   if getattr(m, 'weight', None) is not None and any(
                       m.weight is p for p in params.values())]
        tprune.global_unstructured(
            modules, pruning_method=tprune.L1Unstructured, amount=sparsity)
        for m, name in modules:
            tprune.remove(m, name)

    rows = []
    fn_rows = [('gap global top-k (exact)', ours),
               ('gap uniform top-k (exact)', ours_uniform),
               ('per-layer np.percentile (reference)', percentile),
               ('torch.nn.utils.prune.global_unstructured', torch_prune)]
    times = {label: [] for label, _ in fn_rows}
    for round_idx in range(repeats + 1):  # interleaved; round 0 warms up
        for label, fn in fn_rows:
            restore()
            start = time.perf_counter()
            fn()
            if round_idx:
                times[label].append(time.perf_counter() - start)
    for label, ts in times.items():
        rows.append((label, statistics.median(ts), min(ts), max(ts)))
    restore()
    print(f'\n## One prune event at {sparsity:.0%} over {n / 1e6:.2f} M '
          f'weights, {note} (median [min, max] of {repeats} interleaved '
          f'after a warm-up, {torch.get_num_threads()} threads)')
    print('| approach | time (s) | vs gap global |')
    print('|---|---|---|')
    for label, sec, low, high in rows:
        print(f'| {label} | {sec:.3f} [{low:.3f}, {high:.3f}] | '
              f'{sec / rows[0][1]:.2f}x |')


def bench_memory(model, sparsity):
    params = select_prunable(model)
    n = sum(p.numel() for p in params.values())
    sp = MagnitudeSparsifier(params, sparsity, 'global')
    sp.prune([0])
    in_memory = sum(w.numel() * w.element_size()
                    for w in sp._words.values())
    packed = sum(e['packed'].numel()
                 for e in sp.state_dict()['masks'].values())
    # torch.nn.utils.prune keeps weight_orig (a copy) plus a float mask.
    tp_memory = sum(p.numel() * (p.element_size() + 4)
                    for p in params.values())
    print(f'\n## Mask memory over {n / 1e6:.2f} M prunable weights')
    print('| approach | in memory (bytes / weight) | in checkpoint '
          '(bits / weight) |')
    print('|---|---|---|')
    print(f'| gap (int8 keep words, packed bits) | {in_memory / n:.3f} | '
          f'{packed * 8 / n:.3f} |')
    print(f'| torch.nn.utils.prune (weight_orig + float mask) | '
          f'{tp_memory / n:.3f} | 64.000 (both saved in state_dict) |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--steps', type=int, default=7)
    parser.add_argument('--sparsity', type=float, default=0.8)
    parser.add_argument('--prune-repeats', type=int, default=3)
    parser.add_argument('--skip-step', action='store_true')
    parser.add_argument('--skip-prune', action='store_true')
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    stepped, dense_seconds = None, None
    if not args.skip_step:
        stepped, dense_seconds = bench_step(args.size, args.steps,
                                            args.sparsity, args.config,
                                            args.batch)
    fresh, _ = build_detector(64, args.config)
    if not args.skip_prune:
        # A GaP prune event selects from dense weights: at the start, and
        # for the partition that was just trained dense.
        bench_prune(fresh, args.sparsity, args.prune_repeats,
                    'freshly initialised (dense) weights')
        if stepped is not None:  # its weights are 80% exact zeros now
            bench_prune(stepped, args.sparsity, args.prune_repeats,
                        'weights already masked to 80% zeros (re-prune)')
        bench_memory(fresh, args.sparsity)
    bench_primitives(fresh, args.sparsity, step_seconds=dense_seconds)


if __name__ == '__main__':
    main()
