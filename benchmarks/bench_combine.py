# Copyright (c) gap_mm contributors. All rights reserved.
"""Cost of one P-GaP combine beside one DDP all-reduce of the same model:
today's code beside the code before issue 33, in one run.

``N`` CPU processes (gloo) each build the same detector from mmdet's config,
with an SGD momentum buffer per parameter, and split into K rank groups
(K = the partitions: Faster R-CNN's backbone | neck and heads; every
tensor is covered, as in
``configs/pgap/pgap_faster-rcnn_r50-fpn_8xb2-3x_coco.py`` with its four
partitions merged into two). In one run, interleaved round by round:

* **prune-back**: each rank prunes the partition its group trained dense
  back by magnitude and zeroes its optimizer state there (local);
* **combine**: :class:`gap_mm.engine.parallel_gap.CombineExchange`'s
  ``combine()`` as GaPHook calls it at the end of a round: every
  partition's masks (bits), kept weight values, their optimizer state,
  biases and norm tensors broadcast from the first rank of the group that
  owns it, the uncovered tensors averaged;
* **combine, dense transfer**: the same exchange with every tensor sent
  whole (no sparsifier), for comparison;
* **digest check**: ``verify_identical()``, the BLAKE2b digests of every
  tensor compared over the world, which follows every combine;
* **DDP all-reduce**: what DDP does to the gradients at every step: the
  parameters' gradients in 25 MiB buckets, each all-reduced (sum) and
  divided by N.

The first three steps and the digest check are timed twice per round, with
today's code and with ``events_before.py`` (the code as of commit 5b6858e),
in alternating order; the first round warms up. Each process runs
``--threads`` threads (default 1: the 2 processes share 2 cores).

Bytes per rank are what a rank receives: a broadcast delivers its tensors
once to every rank but the source (so at most the payload), a ring
all-reduce ``2 (N-1)/N`` times its buffer. The combine runs once per round
(every ``period`` steps), the all-reduce at every step.

Usage::

    python benchmarks/bench_combine.py [--procs 2] [--rounds 7]
"""
import argparse
import os
import socket
import statistics
import time

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

BUCKET_BYTES = 25 * 1024 * 1024  # DDP's default bucket_cap_mb

CONFIGS = {
    'faster_rcnn':
    ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
     [r'^backbone\.', [r'^neck\.', r'^rpn_head\.', r'^roi_head\.']]),
    'retinanet_tiny':
    ('configs/gap/cgap_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py',
     [r'^backbone\.', [r'^neck\.', r'^bbox_head\.']]),
}


def _ddp_allreduce(grads, world):
    """All-reduce ``grads`` as DDP's reducer does: flat buckets of about
    ``BUCKET_BYTES``, sum, divide by the world size."""
    bucket, size = [], 0
    for g in grads + [None]:
        if g is not None:
            bucket.append(g)
            size += g.numel() * g.element_size()
        if bucket and (g is None or size >= BUCKET_BYTES):
            flat = torch.cat([t.reshape(-1) for t in bucket])
            torch_dist.all_reduce(flat)
            flat.div_(world)
            offset = 0
            for t in bucket:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()
            bucket, size = [], 0


def _worker(rank, world, port, args, queue):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(args.threads)
    torch_dist.init_process_group('gloo', rank=rank, world_size=world)
    from bench_masking import build_detector
    from events_before import (CombineExchangeBefore, SparsifierBefore,
                               zero_optimizer_state_)

    from gap_mm.engine.parallel_gap import CombineExchange, covered_tensors
    from gap_mm.engine.rank_groups import group_layout
    from gap_mm.sparsity import MagnitudeSparsifier, select_prunable

    config, partitions = CONFIGS[args.model]
    torch.manual_seed(0)
    model, _ = build_detector(64, config=config, batch=1)
    params = select_prunable(model)
    tensors = dict(
        list(model.named_parameters()) + list(model.named_buffers()))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(rank)
    for p in model.parameters():
        opt.state[p]['momentum_buffer'] = torch.randn(p.shape, generator=gen)
    grads = [torch.randn(p.shape, generator=gen) for p in model.parameters()]
    layout = group_layout(rank, world, len(partitions))
    own = [layout.group]
    impls = {}
    for label, sp_cls, exchange_cls in (
            ('before', SparsifierBefore, CombineExchangeBefore),
            ('now', MagnitudeSparsifier, CombineExchange)):
        sp = sp_cls(params, sparsity=0.8, partitions=partitions)
        owner = covered_tensors(model, sp.partition_of, partitions)
        sp.prune(range(len(partitions)))
        impls[label] = (sp, exchange_cls(tensors, owner, opt, layout, sp))
    dense = CombineExchange(tensors, owner, opt, layout)

    def prune_back(label):
        # what GaPHook does on every rank before the exchange
        sp = impls[label][0]
        if label == 'before':
            zero_optimizer_state_(opt, sp.params, sp.prune(own))
        else:
            sp.reset_optimizer_state_(opt, sp.prune(own), {})

    def timed(fn):
        torch_dist.barrier()
        start = time.perf_counter()
        out = fn()
        torch_dist.barrier()
        return time.perf_counter() - start, out

    times, moved = {}, {}
    for rnd in range(args.rounds + 1):  # the first round warms up
        row = {}
        for label in (('before', 'now') if rnd % 2 else ('now', 'before')):
            sp, exchange = impls[label]
            sp.grow(own)  # the round trained this partition dense
            row[('prune-back', label)] = timed(lambda: prune_back(label))
            row[('combine', label)] = timed(exchange.combine)
            row[('digest check', label)] = timed(
                lambda: exchange.verify_identical('in the benchmark'))
        row[('combine, dense transfer', 'now')] = timed(dense.combine)
        row[('DDP all-reduce', 'now')] = timed(
            lambda: _ddp_allreduce(grads, world))
        for key, (t, out) in row.items():
            if rnd:
                times.setdefault(key, []).append(t)
            if isinstance(out, dict):
                moved[key] = out
    if rank == 0:
        n_params = sum(p.numel() for p in model.parameters())
        n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        buffers = sum(b.numel() * b.element_size() for b in model.buffers())
        queue.put(
            dict(
                times=times,
                moved=moved,
                n_params=n_params,
                param_bytes=n_bytes,
                buffer_bytes=buffers,
                threads=torch.get_num_threads(),
                load=os.getloadavg()[0],
                uncovered=sum(1 for o in owner.values() if o is None)))
    torch_dist.destroy_process_group()


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--procs', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument(
        '--model', choices=sorted(CONFIGS), default='faster_rcnn')
    args = parser.parse_args()
    if args.procs % 2:
        parser.error(f'--procs must be a multiple of the 2 partitions, '
                     f'got {args.procs}')
    ctx = mp.get_context('spawn')
    queue = ctx.SimpleQueue()
    mp.spawn(
        _worker,
        args=(args.procs, _free_port(), args, queue),
        nprocs=args.procs,
        join=True)
    res = queue.get()
    n = args.procs
    mib = 1024**2
    model_mib = res['param_bytes'] / mib
    ring = 2 * (n - 1) / n
    rows = [('prune-back', 0.0, 'local: the own partition, exact top-k')]
    for name in ('combine', 'combine, dense transfer'):
        bcast = res['moved'][(name, 'now')]['broadcast'] / mib
        mean = res['moved'][(name, 'now')]['allreduce'] / mib
        rows.append((name, bcast + ring * mean,
                     f'{bcast:.1f} MiB broadcast + {mean:.2f} MiB averaged'))
    rows += [
        ('digest check', 0.0, 'one int64 per tensor, all-reduced'),
        ('DDP all-reduce', ring * model_mib,
         f'{model_mib:.1f} MiB of gradients, ring'),
    ]
    assert res['moved'][('combine', 'now')] == res['moved'][('combine',
                                                             'before')]
    times = res['times']
    ref = statistics.median(times[('DDP all-reduce', 'now')])
    print(f'{args.model}: {res["n_params"] / 1e6:.2f} M parameters '
          f'({model_mib:.1f} MiB fp32, {res["buffer_bytes"] / mib:.2f} MiB '
          f'buffers), 80% sparse (uniform), SGD momentum; {n} gloo '
          f'processes in 2 rank groups, {res["threads"]} thread(s) each; '
          f'{res["uncovered"]} tensors covered by no partition; load '
          f'average {res["load"]:.2f} at the end; median [min, max] of '
          f'{args.rounds} interleaved rounds after a warm-up\n')
    print('| step | before: time (s) | now: time (s) | now / before '
          '| vs DDP all-reduce, before | now | MiB received per rank '
          '| x model | what moves |')
    print('|---|---|---|---|---|---|---|---|---|')

    def cell(key):
        t = times.get(key)
        if t is None:
            return '-', None
        med = statistics.median(t)
        return f'{med:.3f} [{min(t):.3f}, {max(t):.3f}]', med

    for name, mb, what in rows:
        old, old_med = cell((name, 'before'))
        new, new_med = cell((name, 'now'))
        speed = f'{new_med / old_med:.2f}x' if old_med else '-'
        vs_old = f'{old_med / ref:.2f}x' if old_med else '-'
        print(f'| {name} | {old} | {new} | {speed} | {vs_old} | '
              f'{new_med / ref:.2f}x | {mb:.1f} | {mb / model_mib:.2f} '
              f'| {what} |')


if __name__ == '__main__':
    main()
