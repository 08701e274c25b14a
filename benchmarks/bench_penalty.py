# Copyright (c) gap_mm contributors. All rights reserved.
"""Cost of GReg's penalty step beside the masking, on Faster R-CNN R50-FPN.

Every conv and linear weight of mmdet's Faster R-CNN R50-FPN (41.7 M) has a
gradient; 80% of each layer is picked for pruning (by magnitude). Timed in
one run, interleaved, with the CPU caches flushed first as they are after
backward, median [min, max] over the rounds:

* GReg's penalty, unstructured: ``grad += reg * w`` for every layer in one
  ``torch._foreach_addcmul_`` (:class:`gap_mm.sparsity.GrowingPenalty`),
  ``reg`` a tensor per layer shaped like the weight;
* the same, filter-wise: ``reg`` one value per output filter;
* the same update written as a loop over the layers (``p.grad.add_(reg *
  p)``), the obvious way, for comparison;
* the masking every sparse method pays per step (gradients before and
  weights after the optimizer step, int8 keep words, 80%).

Usage::

    python benchmarks/bench_penalty.py [--rounds 15] [--threads 1]
"""
import argparse
import os
import statistics
import time

import torch
from bench_masking import build_detector

import gap_mm  # noqa: F401
from gap_mm.sparsity import (GrowingPenalty, MagnitudeSparsifier,
                             select_prunable)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--sparsity', type=float, default=0.8)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, _ = build_detector(320)
    params = select_prunable(model)
    n = sum(p.numel() for p in params.values())
    for p in params.values():
        p.grad = torch.randn_like(p)
    # the picked sets are the sparsifier's magnitude masks (exact top-k)
    sparsifier = MagnitudeSparsifier(params, sparsity=args.sparsity)
    sparsifier.prune([0])
    picked = {name: sparsifier.pruned_mask(name) for name in params}
    unstructured = GrowingPenalty(params, 'unstructured')
    filters = GrowingPenalty(params, 'filter')
    for name, p in params.items():
        unstructured.set_(name, picked[name], 0.5, 0.0)
        rows = torch.zeros(p.shape[0], dtype=torch.bool)
        rows[:int(round(args.sparsity * p.shape[0]))] = True
        filters.set_(name, rows, 0.5, 0.0)
    loop_regs = {name: reg for name, reg in unstructured.regs.items()}

    def loop():
        with torch.no_grad():
            for name, p in params.items():
                p.grad.add_(loop_regs[name] * p)

    def masking():
        sparsifier.mask_grads_()
        sparsifier.apply_masks_()

    cases = [
        ('GReg penalty, unstructured (one foreach addcmul)',
         unstructured.apply_),
        ('GReg penalty, filter-wise (one foreach addcmul)', filters.apply_),
        ('the same update as a loop over layers', loop),
        ('masking, int8 keep words (gradients + weights)', masking),
    ]
    flush = torch.empty(64 * 2**20)
    times = [[] for _ in cases]
    for rnd in range(args.rounds + 1):  # the first round warms up
        for (_, fn), ts in zip(cases, times):
            flush.fill_(1.0)
            start = time.perf_counter()
            fn()
            if rnd:
                ts.append(time.perf_counter() - start)
    ref = statistics.median(times[-1])
    print(f'{n / 1e6:.2f} M weights with gradients, {args.sparsity:.0%} '
          f'picked per layer, {torch.get_num_threads()} thread(s), cold '
          f'caches, load average {os.getloadavg()[0]:.2f} at the end; median '
          f'[min, max] of {args.rounds} interleaved rounds after a warm-up\n')
    print('| per-step cost | ms | vs masking |')
    print('|---|---|---|')
    for (label, _), ts in zip(cases, times):
        med = statistics.median(ts)
        print(f'| {label} | {med * 1e3:.1f} [{min(ts) * 1e3:.1f}, '
              f'{max(ts) * 1e3:.1f}] | {med / ref:.2f}x |')


if __name__ == '__main__':
    main()
