# Copyright (c) gap_mm contributors. All rights reserved.
"""Two gloo processes on the CPU: identical masks, and divergence caught."""
import os
import os.path as osp

import pytest
import torch
import torch.multiprocessing as mp

from gap_mm.testing.e2e import free_port

WORLD = 2


def _worker(rank, port, work_dir):
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
    from gap_mm.engine import (GaPHook, MaskDivergenceError,
                               verify_masks_across_ranks)
    from gap_mm.testing import GaPToyDataset, GaPToyModel
    from gap_mm.utils import setup_cpu_distributed

    MODELS.register_module(module=GaPToyModel, force=True)
    DATASETS.register_module(module=GaPToyDataset, force=True)
    cfg = Config(
        dict(
            work_dir=work_dir,
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
            train_cfg=dict(by_epoch=False, max_iters=10),
            default_hooks=dict(
                checkpoint=dict(
                    type='CheckpointHook', interval=10, by_epoch=False)),
            log_processor=dict(by_epoch=False),
            custom_hooks=[
                dict(
                    type='GaPHook',
                    sparsity=0.8,
                    distribution='global',
                    partitions=2,
                    schedule=dict(type='cyclic', period=2, num_rounds=2))
            ],
            randomness=dict(seed=0),
            experiment_name=f'dist_rank{rank}'))
    assert setup_cpu_distributed(cfg, 'pytorch')
    runner = Runner.from_cfg(cfg)
    runner.train()
    gap = next(h for h in runner.hooks if isinstance(h, GaPHook))
    sp = gap.sparsifier
    result = dict(
        masks={n: sp.keep_mask(n)
               for n in sp.names},
        # BN running stats are per rank (broadcast_buffers=False), the
        # parameters must agree.
        params={
            k: v.detach().clone()
            for k, v in runner.model.module.named_parameters()
        })
    # The deliberately broken case: one rank's mask moves by one bit.
    if rank == 1:
        word = sp._words['fc2.weight'].view(-1)
        i = int((word == 0).nonzero()[0])
        j = int((word != 0).nonzero()[0])
        word[i], word[j] = -1, 0  # move one pruned position
    try:
        verify_masks_across_ranks(sp, 'in the test')
        result['error'] = None
    except MaskDivergenceError as err:
        result['error'] = str(err)
    torch.save(result, osp.join(work_dir, f'rank{rank}.pt'))
    # Both ranks must be done with gloo before either tears it down; a rank
    # that destroys the group while the other still talks aborts ("terminate
    # called without an active exception").
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.mark.timeout(300)
def test_two_ranks_identical_masks_and_divergence_detected(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    r0, r1 = (
        torch.load(tmp_path / f'rank{r}.pt', weights_only=True)
        for r in range(WORLD))
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


def _corrupting_worker(rank, port, work_dir):
    """Trains on 2 ranks while rank 1 moves one bit of a mask mid-run:
    GaPHook's own check at the next event must stop both ranks."""
    os.environ.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD))
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.registry import DATASETS, HOOKS, MODELS
    from mmengine.runner import Runner

    import gap_mm  # noqa: F401
    from gap_mm.engine import GaPHook, MaskDivergenceError
    from gap_mm.testing import GaPToyDataset, GaPToyModel
    from gap_mm.utils import setup_cpu_distributed

    @HOOKS.register_module(force=True)
    class MoveMaskBitOnRank1(Hook):
        priority = 'LOW'  # after GaPHook's events of the same iteration

        def after_train_iter(self,
                             runner,
                             batch_idx,
                             data_batch=None,
                             outputs=None):
            if runner.rank != 1 or runner.iter != 2:
                return
            gap = next(h for h in runner.hooks if isinstance(h, GaPHook))
            word = gap.sparsifier._words['fc1.weight'].view(-1)
            i = int((word == 0).nonzero()[0])
            j = int((word != 0).nonzero()[0])
            word[i], word[j] = -1, 0

    MODELS.register_module(module=GaPToyModel, force=True)
    DATASETS.register_module(module=GaPToyDataset, force=True)
    cfg = Config(
        dict(
            work_dir=work_dir,
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
            train_cfg=dict(by_epoch=False, max_iters=8),
            default_hooks=dict(checkpoint=None),
            log_processor=dict(by_epoch=False),
            # p0 = conv, fc1 and p1 = fc2, head: p0 is pruned at 2 and stays
            # sparse through the event at 4, which prunes p1 only
            custom_hooks=[
                dict(
                    type='GaPHook',
                    sparsity=0.5,
                    partitions=2,
                    schedule=dict(type='cyclic', period=2, num_rounds=1)),
                dict(type='MoveMaskBitOnRank1')
            ],
            randomness=dict(seed=0),
            experiment_name=f'corrupt_rank{rank}'))
    assert setup_cpu_distributed(cfg, 'pytorch')
    runner = Runner.from_cfg(cfg)
    try:
        runner.train()
        error = None
    except MaskDivergenceError as err:
        error = str(err)
    torch.save(
        dict(error=error, iter=runner.iter),
        osp.join(work_dir, f'corrupt{rank}.pt'))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.mark.timeout(300)
def test_gap_hook_itself_stops_diverged_ranks(tmp_path):
    mp.spawn(
        _corrupting_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    for rank in range(WORLD):
        result = torch.load(tmp_path / f'corrupt{rank}.pt', weights_only=True)
        assert result['error'] is not None, f'rank {rank} trained on'
        assert "differ across ranks at iteration 4 in 1 layer(s): " \
            "['fc1.weight']" in result['error']
        assert result['iter'] == 3  # stopped at the event, not at the end


def _baselines_worker(rank, port, work_dir):
    """RigL, then SET, on 2 ranks: the grown weights must agree."""
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
    from gap_mm.engine import BaseSparsityHook
    from gap_mm.testing import GaPToyDataset, GaPToyModel
    from gap_mm.utils import setup_cpu_distributed

    MODELS.register_module(module=GaPToyModel, force=True)
    DATASETS.register_module(module=GaPToyDataset, force=True)
    result = {}
    for hook in (dict(type='RigLHook',
                      distribution='erk'), dict(type='SETHook')):
        cfg = Config(
            dict(
                work_dir=osp.join(work_dir, hook['type']),
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
                train_cfg=dict(by_epoch=False, max_iters=10),
                default_hooks=dict(checkpoint=None),
                log_processor=dict(by_epoch=False),
                custom_hooks=[
                    dict(
                        hook,
                        sparsity=0.75,
                        interval=2,
                        end=8,
                        drop_fraction=0.5)
                ],
                randomness=dict(seed=0),
                experiment_name=f'{hook["type"]}_rank{rank}'))
        assert setup_cpu_distributed(cfg, 'pytorch')
        runner = Runner.from_cfg(cfg)
        runner.train()
        sp = next(h for h in runner.hooks
                  if isinstance(h, BaseSparsityHook)).sparsifier
        result[hook['type']] = dict(
            masks={n: sp.keep_mask(n)
                   for n in sp.names},
            params={
                k: v.detach().clone()
                for k, v in runner.model.module.named_parameters()
            })
    torch.save(result, osp.join(work_dir, f'baselines{rank}.pt'))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.mark.timeout(300)
def test_rigl_and_set_grow_the_same_weights_on_every_rank(tmp_path):
    mp.spawn(
        _baselines_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    r0, r1 = (
        torch.load(tmp_path / f'baselines{r}.pt', weights_only=True)
        for r in range(WORLD))
    for method in ('RigLHook', 'SETHook'):
        for name, mask in r0[method]['masks'].items():
            assert mask is not None, (method, name)
            assert torch.equal(mask, r1[method]['masks'][name]), (method, name)
        for key, value in r0[method]['params'].items():
            assert torch.equal(value, r1[method]['params'][key]), (method, key)
