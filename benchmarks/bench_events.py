# Copyright (c) gap_mm contributors. All rights reserved.
"""Cost of one mask event of each method on Faster R-CNN R50-FPN, CPU:
today's code beside the code before issue 33, in one run.

Every conv and linear weight of mmdet's Faster R-CNN R50-FPN (41.7 M) is
prunable at 80% (uniform), with an SGD momentum buffer per weight. Each
event is timed with today's gap_mm and with ``events_before.py`` (the code
as of commit 5b6858e), one after the other, in interleaved rounds after a
warm-up round; the warm-up also checks that both give the same masks,
weights and momentum, bit for bit. Medians with the range over the rounds:

* a GaP prune event: the largest of K=4 partitions (fc6, fc7 and the
  box head's layers, 14.3 M weights),
  dense for a period, pruned back by exact top-k, and its optimizer state
  zeroed;
* a GaP prune of every partition: the same event over the 41.7 M weights
  the events below touch, the reference their ratio is taken against;
* a GMP prune event: every layer re-selected at a new target of the cubic
  ramp (40% -> 80%), optimizer state zeroed;
* a RigL update: drop 30% of each layer's active weights by |w| and grow as
  many by |grad| (exact top-k both), new masks, optimizer state at dropped
  and grown positions; the |grad| copy RigL keeps at the step before is
  timed apart;
* SET's update (random growth: the random scores are drawn in the update);
* the mask digest (BLAKE2b of the packed masks) of the cross-rank check.

Usage::

    python benchmarks/bench_events.py [--rounds 7] [--threads 1]
"""
import argparse
import os
import statistics
import time

import torch
from bench_masking import build_detector

import events_before as before  # noqa: I100
import gap_mm  # noqa: F401
from gap_mm.engine.hooks.set_hook import _ScoresOnAccess
from gap_mm.sparsity import MagnitudeSparsifier, RandomScore, select_prunable


class _Now:
    """Today's implementation, as the hooks call it."""
    name = 'now'
    sparsifier = MagnitudeSparsifier

    @staticmethod
    def reset_state(sp, opt, pruned, grown):
        sp.reset_optimizer_state_(opt, pruned, grown)

    @staticmethod
    def drop_grow(sp, opt, scores, fraction):
        lost, found, _ = sp.drop_and_grow(fraction,
                                          lambda name, _: scores[name])
        sp.reset_optimizer_state_(opt, lost, found)

    @staticmethod
    def set_scores(score, sp):
        return _ScoresOnAccess(
            score, {n: p
                    for n, p in sp.params.items() if sp.is_sparse(n)})


class _Before:
    """The implementation before issue 33."""
    name = 'before'
    sparsifier = before.SparsifierBefore

    @staticmethod
    def reset_state(sp, opt, pruned, grown):
        if pruned:
            before.zero_optimizer_state_(opt, sp.params, pruned)
        if grown:
            before.init_regrown_state_(opt, sp.params, grown)

    @staticmethod
    def drop_grow(sp, opt, scores, fraction):
        lost, found, _ = before.drop_grow_update(sp, scores, fraction)
        _Before.reset_state(sp, opt, lost, found)

    @staticmethod
    def set_scores(score, sp):
        return {n: score(n, p) for n, p in sp.params.items()
                if sp.is_sparse(n)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--sparsity', type=float, default=0.8)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, _ = build_detector(320)
    params = select_prunable(model)
    n = sum(p.numel() for p in params.values())
    originals = {k: v.detach().clone() for k, v in params.items()}
    grads = {k: torch.randn_like(v) for k, v in params.items()}
    captured = {k: g.abs() for k, g in grads.items()}  # RigL's |grad|
    opt = torch.optim.SGD(list(params.values()), lr=0.1, momentum=0.9)
    momenta = {k: torch.randn_like(v) for k, v in params.items()}
    s = args.sparsity

    def restore():
        with torch.no_grad():
            for k, v in params.items():
                v.copy_(originals[k])
                opt.state[v]['momentum_buffer'] = momenta[k].clone()

    def timed(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def gap_event(impl):
        sp = impl.sparsifier(params, s, 'uniform', partitions=4)
        sp.prune(range(4))
        big = max(
            range(4),
            key=lambda k: sum(params[n].numel() for n in sp.partitions[k]))
        sp.grow([big])
        restore()  # the partition trained dense: its weights moved
        return sp, timed(lambda: impl.reset_state(sp, opt, sp.prune([big]),
                                                  {}))

    def gap_all(impl):
        sp = impl.sparsifier(params, s, 'uniform', partitions=4)
        return sp, timed(lambda: impl.reset_state(sp, opt, sp.prune(
            range(4)), {}))

    def gmp_event(impl):
        sp = impl.sparsifier(params, s / 2, 'uniform')
        sp.prune([0])

        def event():
            sp.set_sparsity(s)
            impl.reset_state(sp, opt, sp.prune([0]), {})

        return sp, timed(event)

    def drop_grow_event(impl, grow_scores):
        sp = impl.sparsifier(params, s, 'uniform')
        sp.prune([0], score=RandomScore(0))
        return sp, timed(lambda: impl.drop_grow(sp, opt, grow_scores(sp), 0.3))

    def rigl_event(impl):
        return drop_grow_event(impl, lambda sp: captured)

    def set_event(impl):
        score = RandomScore(1)
        return drop_grow_event(impl, lambda sp: impl.set_scores(score, sp))

    def rigl_capture(impl):
        return None, timed(lambda: {k: g.abs() for k, g in grads.items()})

    def digest(impl):
        sp = impl.sparsifier(params, s, 'uniform')
        sp.prune([0])
        return sp, timed(sp.fingerprint)

    events = [
        ('GaP prune event (the largest of K=4 partitions)', gap_event),
        ('GaP prune of every partition (the same weights as the rows below)',
         gap_all),
        ('GMP prune event (every layer, 40% -> 80%)', gmp_event),
        ('RigL update (drop/grow 30% of the active weights)', rigl_event),
        ('SET update (random growth)', set_event),
        ('RigL: the gradient magnitudes kept before masking', rigl_capture),
        ('mask digest for the cross-rank check', digest),
    ]
    impls = (_Before, _Now)
    times = {(label, i.name): [] for label, _ in events for i in impls}
    for rnd in range(args.rounds + 1):  # round 0 warms up and checks
        for label, fn in events:
            order = impls if rnd % 2 else impls[::-1]
            results = {}
            for impl in order:
                restore()
                sp, elapsed = fn(impl)
                if rnd:
                    times[(label, impl.name)].append(elapsed)
                elif sp is not None:
                    results[impl.name] = (
                        {k: sp.keep_mask(k)
                         for k in sp.names}, sp.fingerprint(),
                        {k: v.detach().clone()
                         for k, v in params.items()}, {
                             k: opt.state[v]['momentum_buffer'].clone()
                             for k, v in params.items()
                         })
            if results:
                _check_same(label, results['before'], results['now'])
    restore()
    load = os.getloadavg()[0]
    print(f'\n## One event over {n / 1e6:.2f} M weights of Faster R-CNN '
          f'R50-FPN at {s:.0%}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} thread(s), load average {load:.2f} '
          f'at the end (median [min, max] of {args.rounds} interleaved '
          f'rounds after a warm-up; before and now gave the same masks, '
          f'weights and momentum)\n')
    print('| event | before: time (s) | now: time (s) | now / before '
          '| vs the GaP event, before | now | vs a GaP prune of the same '
          'weights, before | now |')
    print('|---|---|---|---|---|---|---|---|')

    def med(label, impl):
        return statistics.median(times[(label, impl)])

    gap, gap_every = events[0][0], events[1][0]
    for idx, (label, _) in enumerate(events):
        cells = []
        for impl in ('before', 'now'):
            ts = times[(label, impl)]
            cells.append(f'{med(label, impl):.3f} [{min(ts):.3f}, '
                         f'{max(ts):.3f}]')
        same = gap if idx == 0 else gap_every
        print(f'| {label} | {cells[0]} | {cells[1]} | '
              f'{med(label, "now") / med(label, "before"):.2f}x | '
              f'{med(label, "before") / med(gap, "before"):.2f}x | '
              f'{med(label, "now") / med(gap, "now"):.2f}x | '
              f'{med(label, "before") / med(same, "before"):.2f}x | '
              f'{med(label, "now") / med(same, "now"):.2f}x |')


def _check_same(label, old, new):
    """The two implementations' masks, fingerprints, weights and momentum
    after an event are equal, bit for bit."""
    for part, a, b in zip(('masks', 'fingerprint', 'weights', 'momentum'),
                          old, new):
        if isinstance(a, dict):
            same = a.keys() == b.keys() and all(
                (a[k] is None and b[k] is None) or (
                    a[k] is not None and b[k] is not None
                    and torch.equal(a[k], b[k])) for k in a)
        else:
            same = torch.equal(a, b)
        if not same:
            raise RuntimeError(f'{label}: the {part} differ before and now')


if __name__ == '__main__':
    main()
