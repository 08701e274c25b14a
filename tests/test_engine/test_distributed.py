# Copyright (c) gap_mm contributors. All rights reserved.
"""Two gloo processes on the CPU: identical masks, and divergence caught."""
import os
import os.path as osp
import socket

import pytest
import torch
import torch.multiprocessing as mp

WORLD = 2


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


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
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD)
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
