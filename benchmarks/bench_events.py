# Copyright (c) gap_mm contributors. All rights reserved.
"""Cost of one mask event of each method on Faster R-CNN R50-FPN, CPU.

Every conv and linear weight of mmdet's Faster R-CNN R50-FPN (41.7 M) is
prunable at 80% (uniform), with an SGD momentum buffer per weight. Measured
side by side in one run, the rounds interleaved (each event once per
round), medians with the range over the rounds:

* a GaP prune event: one of K=4 partitions, dense for a period, pruned back
  by exact top-k, and its optimizer state zeroed;
* a GMP prune event: every layer re-selected at a new target of the cubic
  ramp, optimizer state zeroed;
* a RigL update: drop 30% of each layer's active weights by |w| and grow as
  many by |grad| (exact top-k both), new masks, optimizer state at dropped
  and grown positions; the |grad| copy RigL keeps before it is timed apart;
* SET's update (random growth);
* the cross-rank mask digest (BLAKE2b of the packed masks) every event
  computes in distributed training.

Usage::

    python benchmarks/bench_events.py [--rounds 5]
"""
import argparse
import statistics
import time

import torch
from bench_masking import build_detector

import gap_mm  # noqa: F401
from gap_mm.sparsity import (MagnitudeSparsifier, RandomScore, drop_and_grow,
                             num_to_move, select_prunable)


def _state(params):
    """A momentum buffer per weight, as SGD keeps it."""
    opt = torch.optim.SGD(list(params.values()), lr=0.1, momentum=0.9)
    for p in params.values():
        opt.state[p]['momentum_buffer'] = torch.randn_like(p)
    return opt


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--sparsity', type=float, default=0.8)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, _ = build_detector(320)
    params = select_prunable(model)
    n = sum(p.numel() for p in params.values())
    originals = {k: v.detach().clone() for k, v in params.items()}
    grads = {k: torch.randn_like(v) for k, v in params.items()}
    opt = _state(params)
    s = args.sparsity

    def restore():
        with torch.no_grad():
            for k, v in params.items():
                v.copy_(originals[k])

    def gap_event():
        sp = MagnitudeSparsifier(params, s, 'uniform', partitions=4)
        sp.prune(range(4))
        big = max(
            range(4),
            key=lambda k: sum(params[n].numel() for n in sp.partitions[k]))
        sp.grow([big])
        restore()  # the partition trained dense: its weights moved
        start = time.perf_counter()
        pruned = sp.prune([big])
        sp.zero_optimizer_state_(opt, pruned)
        return time.perf_counter() - start

    def gmp_event():
        sp = MagnitudeSparsifier(params, s / 2, 'uniform')
        sp.prune([0])
        start = time.perf_counter()
        sp.set_sparsity(s)
        pruned = sp.prune([0])
        sp.zero_optimizer_state_(opt, pruned)
        return time.perf_counter() - start

    def drop_grow_event(grow):
        sp = MagnitudeSparsifier(params, s, 'uniform')
        sp.prune([0], score=RandomScore(0))
        start = time.perf_counter()
        scores = grow(sp)
        new = {}
        for name in sp.names:
            pruned = sp.pruned_mask(name)
            num_pruned = int(pruned.sum())
            k = num_to_move(pruned.numel() - num_pruned, num_pruned, 0.3)
            new[name] = drop_and_grow(pruned, sp.score(name, params[name]),
                                      scores[name], k)
        dropped, grown = sp.set_masks(new)
        sp.zero_optimizer_state_(opt, dropped)
        sp.init_regrown_state_(opt, grown)
        return time.perf_counter() - start

    def rigl_event():
        return drop_grow_event(lambda sp: {
            k: g.abs()
            for k, g in grads.items()
        })

    def set_event():
        score = RandomScore(1)
        return drop_grow_event(lambda sp: {
            k: score(k, v)
            for k, v in params.items()
        })

    def rigl_capture():
        start = time.perf_counter()
        kept = {k: g.detach().abs() for k, g in grads.items()}
        elapsed = time.perf_counter() - start
        del kept
        return elapsed

    def digest():
        sp = MagnitudeSparsifier(params, s, 'uniform')
        sp.prune([0])
        start = time.perf_counter()
        sp.fingerprint()
        return time.perf_counter() - start

    events = [
        ('GaP prune event (largest of K=4 partitions)', gap_event),
        ('GMP prune event (every layer, 40% -> 80%)', gmp_event),
        ('RigL update (drop/grow 30% of the active weights)', rigl_event),
        ('SET update (random growth)', set_event),
        ('RigL: keep |grad| before masking', rigl_capture),
        ('mask digest for the cross-rank check', digest),
    ]
    times = {label: [] for label, _ in events}
    for _ in range(args.rounds):
        for label, fn in events:
            restore()
            times[label].append(fn())
    restore()
    print(f'\n## One event over {n / 1e6:.2f} M weights of Faster R-CNN '
          f'R50-FPN at {s:.0%}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads (median [min, max] of '
          f'{args.rounds} interleaved rounds)')
    print('| event | time (s) | vs GaP prune event |')
    print('|---|---|---|')
    ref = statistics.median(times[events[0][0]])
    for label, _ in events:
        ts = times[label]
        med = statistics.median(ts)
        print(f'| {label} | {med:.3f} [{min(ts):.3f}, {max(ts):.3f}] | '
              f'{med / ref:.2f}x |')


if __name__ == '__main__':
    main()
