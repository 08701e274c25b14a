# Copyright (c) gap_mm contributors. All rights reserved.
"""Two gloo processes on the CPU: identical masks, and divergence caught."""
import json
import os
import os.path as osp

import pytest
import torch
import torch.multiprocessing as mp

from gap_mm.testing.e2e import free_port

WORLD = 2


def _move_one_mask_bit(sparsifier, name):
    """Swap one pruned and one kept position of a layer's mask."""
    word = sparsifier._words[name].view(-1)
    i = int((word == 0).nonzero()[0])
    j = int((word != 0).nonzero()[0])
    word[i], word[j] = -1, 0


def _toy_runner(rank, port, work_dir, name, custom_hooks, max_iters=10):
    """A Runner of the toy model on rank ``rank`` of a 2-process gloo group
    (joined here), SGD with momentum, no checkpoints."""
    os.environ.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD))
    from mmengine.config import Config
    from mmengine.registry import DATASETS, MODELS
    from mmengine.runner import Runner

    import gap_mm  # noqa: F401
    from gap_mm.testing import GaPToyDataset, GaPToyModel
    from gap_mm.utils import setup_cpu_distributed

    MODELS.register_module(module=GaPToyModel, force=True)
    DATASETS.register_module(module=GaPToyDataset, force=True)
    cfg = Config(
        dict(
            work_dir=osp.join(work_dir, name),
            launcher='pytorch',
            model=dict(type='GaPToyModel'),
            train_dataloader=dict(
                dataset=dict(type='GaPToyDataset'),
                sampler=dict(type='InfiniteSampler', shuffle=True),
                batch_size=3,
                num_workers=0),
            optim_wrapper=dict(
                type='GaPOptimWrapper',
                optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
            train_cfg=dict(by_epoch=False, max_iters=max_iters),
            default_hooks=dict(checkpoint=None),
            log_processor=dict(by_epoch=False),
            custom_hooks=custom_hooks,
            randomness=dict(seed=0),
            experiment_name=f'{name}_rank{rank}'))
    assert setup_cpu_distributed(cfg, 'pytorch')
    return Runner.from_cfg(cfg)


def _finish(work_dir, name, rank, result):
    torch.save(result, osp.join(work_dir, f'{name}{rank}.pt'))
    # Both ranks must be done with gloo before either tears it down; a rank
    # that destroys the group while the other still talks aborts ("terminate
    # called without an active exception").
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _results(work_dir, name):
    return [
        torch.load(osp.join(work_dir, f'{name}{r}.pt'), weights_only=True)
        for r in range(WORLD)
    ]


def _state(runner):
    from gap_mm.engine import BaseSparsityHook
    sp = next(h for h in runner.hooks
              if isinstance(h, BaseSparsityHook)).sparsifier
    # BN running stats are per rank (broadcast_buffers=False), the
    # parameters must agree.
    return sp, dict(
        masks={n: sp.keep_mask(n)
               for n in sp.names},
        params={
            k: v.detach().clone()
            for k, v in runner.model.module.named_parameters()
        })


def _worker(rank, port, work_dir):
    from gap_mm.engine import MaskDivergenceError, verify_masks_across_ranks
    runner = _toy_runner(rank, port, work_dir, 'gap', [
        dict(
            type='GaPHook',
            sparsity=0.8,
            distribution='global',
            partitions=2,
            schedule=dict(type='cyclic', period=2, num_rounds=2))
    ])
    runner.train()
    sp, result = _state(runner)
    # The deliberately broken case: one rank's mask moves by one bit.
    if rank == 1:
        _move_one_mask_bit(sp, 'fc2.weight')
    try:
        verify_masks_across_ranks(sp, 'in the test')
        result['error'] = None
    except MaskDivergenceError as err:
        result['error'] = str(err)
    _finish(work_dir, 'gap', rank, result)


@pytest.mark.timeout(300)
def test_two_ranks_identical_masks_and_divergence_detected(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    r0, r1 = _results(tmp_path, 'gap')
    assert set(r0['masks']) == {
        'conv.weight', 'fc1.weight', 'fc2.weight', 'head.weight'
    }
    for name, mask in r0['masks'].items():
        assert mask is not None, f'{name} still dense after the schedule'
        assert torch.equal(mask, r1['masks'][name]), name
    for key, value in r0['params'].items():
        assert torch.equal(value, r1['params'][key]), key
    total = sum(m.numel() for m in r0['masks'].values())
    kept = sum(int(m.sum()) for m in r0['masks'].values())
    assert kept == total - round(0.8 * total)
    for result in (r0, r1):
        assert result['error'] is not None
        assert "differ across ranks in the test in 1 layer(s): " \
            "['fc2.weight']" in result['error']
    # both ranks share the work dir; rank 0 alone writes the event record
    with open(osp.join(tmp_path, 'gap', 'sparsity_events.jsonl')) as f:
        events = [json.loads(line) for line in f]
    assert [(e['event'], e['iter']) for e in events] == [('init', 0)] + [
        ('gap', i) for i in (0, 2, 4, 6, 8)
    ]


def _corrupting_worker(rank, port, work_dir):
    """Trains on 2 ranks while rank 1 moves one bit of a mask mid-run:
    GaPHook's own check at the next event must stop both ranks."""
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    from gap_mm.engine import GaPHook, MaskDivergenceError

    @HOOKS.register_module(force=True)
    class MoveMaskBitOnRank1(Hook):
        priority = 'LOW'  # after GaPHook's events of the same iteration

        def after_train_iter(self,
                             runner,
                             batch_idx,
                             data_batch=None,
                             outputs=None):
            if runner.rank == 1 and runner.iter == 2:
                gap = next(h for h in runner.hooks if isinstance(h, GaPHook))
                _move_one_mask_bit(gap.sparsifier, 'fc1.weight')

    # p0 = conv, fc1 and p1 = fc2, head: p0 is pruned at 2 and stays sparse
    # through the event at 4, which prunes p1 only
    runner = _toy_runner(
        rank,
        port,
        work_dir,
        'corrupt', [
            dict(
                type='GaPHook',
                sparsity=0.5,
                partitions=2,
                schedule=dict(type='cyclic', period=2, num_rounds=1)),
            dict(type='MoveMaskBitOnRank1')
        ],
        max_iters=8)
    try:
        runner.train()
        error = None
    except MaskDivergenceError as err:
        error = str(err)
    _finish(work_dir, 'corrupt', rank, dict(error=error, iter=runner.iter))


@pytest.mark.timeout(300)
def test_gap_hook_itself_stops_diverged_ranks(tmp_path):
    mp.spawn(
        _corrupting_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    for rank, result in enumerate(_results(tmp_path, 'corrupt')):
        assert result['error'] is not None, f'rank {rank} trained on'
        assert "differ across ranks at iteration 4 in 1 layer(s): " \
            "['fc1.weight']" in result['error']
        assert result['iter'] == 3  # stopped at the event, not at the end


def _baselines_worker(rank, port, work_dir):
    """RigL, then SET, on 2 ranks: the grown weights must agree."""
    result = {}
    for hook in (dict(type='RigLHook',
                      distribution='erk'), dict(type='SETHook')):
        runner = _toy_runner(
            rank, port, work_dir, hook['type'],
            [dict(hook, sparsity=0.75, interval=2, end=8, drop_fraction=0.5)])
        runner.train()
        result[hook['type']] = _state(runner)[1]
    _finish(work_dir, 'baselines', rank, result)


@pytest.mark.timeout(300)
def test_rigl_and_set_grow_the_same_weights_on_every_rank(tmp_path):
    mp.spawn(
        _baselines_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    r0, r1 = _results(tmp_path, 'baselines')
    for method in ('RigLHook', 'SETHook'):
        for name, mask in r0[method]['masks'].items():
            assert mask is not None, (method, name)
            assert torch.equal(mask, r1[method]['masks'][name]), (method, name)
        for key, value in r0[method]['params'].items():
            assert torch.equal(value, r1[method]['params'][key]), (method, key)
