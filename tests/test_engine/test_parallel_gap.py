# Copyright (c) gap_mm contributors. All rights reserved.
"""Parallel GaP on gloo: 2 processes (K=2, a rank per group) and 4
processes (K=2, two ranks per group)."""
import copy
import os
import os.path as osp

import pytest
import torch
import torch.multiprocessing as mp

from gap_mm.testing.e2e import free_port

PERIOD, ROUNDS, MAX_ITERS, BATCH = 3, 2, 10, 3
# p0: conv, fc1 and the BN that follows fc1; p1: fc2; head: no partition
PARTITIONS = [[r'^conv\.', r'^fc1\.', r'^bn\.'], [r'^fc2\.']]


def _cfg(work_dir, name, rank, **changes):
    from mmengine.config import Config
    hook = dict(
        type='GaPHook',
        sparsity=0.5,
        exclude=[r'^head\.'],
        partitions=PARTITIONS,
        schedule=dict(type='parallel', period=PERIOD, num_rounds=ROUNDS))
    hook.update(changes.pop('hook', {}))
    cfg = dict(
        work_dir=osp.join(work_dir, name),
        launcher='pytorch',
        model=dict(type='GaPToyModel'),
        train_dataloader=dict(
            dataset=dict(type='GaPToyDataset'),
            sampler=dict(
                type='GroupInfiniteSampler',
                num_groups=2,
                group_samples=PERIOD * ROUNDS * BATCH),
            batch_size=BATCH,
            num_workers=0),
        optim_wrapper=dict(
            type='GaPOptimWrapper',
            optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=MAX_ITERS),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', by_epoch=False, interval=PERIOD)),
        log_processor=dict(by_epoch=False),
        custom_hooks=[hook, dict(type='SnapshotHook')],
        randomness=dict(seed=0),
        experiment_name=f'{name}_rank{rank}')
    cfg.update(changes)
    return Config(cfg)


def _setup(rank, world, port):
    os.environ.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world))
    from mmengine.hooks import Hook
    from mmengine.registry import DATASETS, HOOKS, MODELS

    import gap_mm  # noqa: F401
    from gap_mm.engine import GaPHook
    from gap_mm.testing import GaPToyDataset, GaPToyModel
    import gap_mm.testing.hooks  # noqa: F401  (KillAfterIterHook)

    MODELS.register_module(module=GaPToyModel, force=True)
    DATASETS.register_module(module=GaPToyDataset, force=True)

    def snapshot(runner):
        gap = next(h for h in runner.hooks if isinstance(h, GaPHook))
        model = runner.model.module
        state = runner.optim_wrapper.optimizer.state
        return dict(
            tensors={
                k: v.detach().clone()
                for k, v in model.state_dict().items()
            },
            momentum={
                n: state[p]['momentum_buffer'].clone()
                for n, p in model.named_parameters()
                if 'momentum_buffer' in state.get(p, {})
            },
            masks={
                n: gap.sparsifier.keep_mask(n)
                for n in gap.sparsifier.names
            })

    @HOOKS.register_module(force=True)
    class SnapshotHook(Hook):
        """The model before (HIGHEST, ahead of GaPHook) and after (then
        LOWEST) every combine, saved per rank."""
        priority = 'HIGHEST'

        def __init__(self):
            self.pre, self.post = {}, {}

        def after_train_iter(self,
                             runner,
                             batch_idx,
                             data_batch=None,
                             outputs=None):
            gap = next(h for h in runner.hooks if isinstance(h, GaPHook))
            step = runner.iter + 1
            if gap.schedule.is_combine(step):
                self.pre[step] = snapshot(runner)

    @HOOKS.register_module(force=True)
    class PostSnapshotHook(Hook):
        priority = 'LOWEST'

        def after_train_iter(self,
                             runner,
                             batch_idx,
                             data_batch=None,
                             outputs=None):
            pre = next(
                h for h in runner.hooks if type(h).__name__ == 'SnapshotHook')
            step = runner.iter + 1
            if step in pre.pre:
                pre.post[step] = snapshot(runner)


def _train(cfg):
    from mmengine.runner import Runner

    from gap_mm.utils import setup_cpu_distributed
    cfg.custom_hooks.append(dict(type='PostSnapshotHook'))
    assert setup_cpu_distributed(cfg, 'pytorch')
    runner = Runner.from_cfg(cfg)
    runner.train()
    snap = next(h for h in runner.hooks if type(h).__name__ == 'SnapshotHook')
    return runner, dict(
        pre=snap.pre,
        post=snap.post,
        final={
            k: v.detach().clone()
            for k, v in runner.model.module.state_dict().items()
        })


def _finish(work_dir, name, rank, result):
    torch.save(result, osp.join(work_dir, f'{name}{rank}.pt'))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _worker(rank, world, port, work_dir):
    _setup(rank, world, port)
    result = {}
    _, result['straight'] = _train(_cfg(work_dir, 'straight', rank))
    if world == 2:
        from gap_mm.errors import GaPConfigError
        from gap_mm.testing.hooks import KilledForTest

        # kill right after the checkpoint of the second combine, resume
        cfg = _cfg(work_dir, 'killed', rank)
        cfg.custom_hooks.append(
            dict(type='KillAfterIterHook', iteration=2 * PERIOD))
        try:
            _train(cfg)
        except KilledForTest:
            pass
        cfg = _cfg(
            work_dir,
            'resumed',
            rank,
            resume=True,
            load_from=osp.join(work_dir, 'killed', f'iter_{2 * PERIOD}.pth'))
        _, resumed = _train(cfg)
        result['resumed'] = resumed['final']

        # configurations that cannot train P-GaP, each with its message
        bad = dict(
            three_partitions=dict(hook=dict(partitions=3)),
            plain_sampler=dict(
                train_dataloader=dict(
                    dataset=dict(type='GaPToyDataset'),
                    sampler=dict(type='InfiniteSampler'),
                    batch_size=BATCH,
                    num_workers=0)),
            wrong_samples=dict(
                train_dataloader=dict(
                    dataset=dict(type='GaPToyDataset'),
                    sampler=dict(
                        type='GroupInfiniteSampler',
                        num_groups=2,
                        group_samples=7),
                    batch_size=BATCH,
                    num_workers=0)),
            checkpoint_in_round=dict(
                default_hooks=dict(
                    checkpoint=dict(
                        type='CheckpointHook', by_epoch=False, interval=2))),
            broadcast_buffers=dict(
                model_wrapper_cfg=dict(
                    type='MMDistributedDataParallel', broadcast_buffers=True)),
        )
        result['errors'] = {}
        for name, changes in bad.items():
            try:
                _train(_cfg(work_dir, name, rank, **copy.deepcopy(changes)))
                result['errors'][name] = None
            except GaPConfigError as err:
                result['errors'][name] = str(err)
    _finish(work_dir, 'pgap', rank, result)


def _run(tmp_path, world, worker=_worker, prefix='pgap'):
    """Spawn ``world`` ranks of ``worker`` and read back what each saved
    as ``<prefix><rank>.pt``."""
    mp.spawn(worker, args=(world, free_port(), str(tmp_path)), nprocs=world)
    return [
        torch.load(tmp_path / f'{prefix}{r}.pt', weights_only=True)
        for r in range(world)
    ]


def _check_combines(results, world):
    from gap_mm.sparsity import num_kept, topk_masks
    per_group = world // 2
    leaders = [0, per_group]  # first rank of each group
    for step in (PERIOD, 2 * PERIOD):
        pre = [r['straight']['pre'][step] for r in results]
        post = [r['straight']['post'][step] for r in results]
        # within a group one model (BN statistics are per rank, as DDP
        # keeps them with broadcast_buffers=False); the two groups trained
        # different ones
        for rank in range(world):
            same = pre[leaders[rank // per_group]]['tensors']
            for key, value in pre[rank]['tensors'].items():
                if not key.startswith('bn.running'):
                    assert torch.equal(value, same[key]), (step, rank, key)
        assert any(
            not torch.equal(pre[0]['tensors'][k], pre[per_group]['tensors'][k])
            for k in pre[0]['tensors'])
        # after the combine every rank holds the same model
        for rank in range(1, world):
            for key, value in post[0]['tensors'].items():
                assert torch.equal(value, post[rank]['tensors'][key]), key
            for key, value in post[0]['momentum'].items():
                assert torch.equal(value, post[rank]['momentum'][key]), key
        combined = post[0]
        owners = {
            'conv.weight': 0,
            'conv.bias': 0,
            'fc1.weight': 0,
            'fc1.bias': 0,
            'bn.weight': 0,
            'bn.bias': 0,
            'bn.running_mean': 0,
            'bn.running_var': 0,
            'bn.num_batches_tracked': 0,
            'fc2.weight': 1,
            'fc2.bias': 1
        }
        for key, value in combined['tensors'].items():
            if key in owners:
                source = pre[leaders[owners[key]]]
                expected = source['tensors'][key]
                if key in combined['masks']:
                    # group k's dense weights, pruned back by magnitude (the
                    # mask as the other group holds it: group k regrows its
                    # partition for the next round at once)
                    other = leaders[1 - owners[key]]
                    keep = post[other]['masks'][key]
                    assert int(keep.sum()) == num_kept(keep.numel(), 0.5)
                    assert torch.equal(
                        keep,
                        topk_masks([expected.abs()],
                                   num_kept(keep.numel(), 0.5))[0])
                    expected = expected * keep
                assert torch.equal(value, expected), (step, key)
                if key in source['momentum']:
                    mom = source['momentum'][key]
                    if key in combined['masks']:
                        mom = mom * keep
                    assert torch.equal(combined['momentum'][key], mom), key
            else:  # the head: the mean over the groups
                mean = sum(pre[r]['tensors'][key] for r in leaders) / 2
                assert torch.allclose(value, mean, rtol=1e-6, atol=1e-7), key
                mom = sum(pre[r]['momentum'][key] for r in leaders) / 2
                assert torch.allclose(
                    combined['momentum'][key], mom, rtol=1e-6, atol=1e-7)
        assert set(owners) | {'head.weight', 'head.bias'} == set(
            combined['tensors'])
    # the fine-tune trains one model (BN statistics stay per rank)
    for rank in range(1, world):
        for key, value in results[0]['straight']['final'].items():
            if not key.startswith('bn.running'):
                assert torch.equal(value,
                                   results[rank]['straight']['final'][key])


@pytest.mark.timeout(600)
def test_two_processes_combine_resume_and_errors(tmp_path):
    results = _run(tmp_path, 2)
    _check_combines(results, 2)
    # killed after the second combine and resumed: the same final model
    for rank, result in enumerate(results):
        for key, value in result['straight']['final'].items():
            assert torch.equal(value, result['resumed'][key]), (rank, key)
    errors = results[0]['errors']
    assert errors == results[1]['errors']
    assert 'the 2 processes into 3 rank groups' in errors['three_partitions']
    assert ("train_dataloader.sampler={'type': 'GroupInfiniteSampler', "
            "'num_groups': 2, 'group_samples': 18}") in errors['plain_sampler']
    assert "it has {'num_groups': 2, 'group_samples': 7}" in errors[
        'wrong_samples']
    assert ('default_hooks.checkpoint.interval=2 would validate or save '
            'between combines (after iterations 2)'
            ) in errors['checkpoint_in_round']
    assert 'broadcast_buffers=False' in errors['broadcast_buffers']


@pytest.mark.timeout(600)
def test_four_processes_two_ranks_per_group(tmp_path):
    _check_combines(_run(tmp_path, 4), 4)


def test_one_process_is_refused():
    from mmengine.registry import DATASETS, MODELS
    from mmengine.runner import Runner

    import gap_mm  # noqa: F401
    from gap_mm.errors import GaPConfigError
    from gap_mm.testing import GaPToyDataset, GaPToyModel
    MODELS.register_module(module=GaPToyModel, force=True)
    DATASETS.register_module(module=GaPToyDataset, force=True)
    import tempfile
    cfg = _cfg(tempfile.mkdtemp(), 'single', 0, launcher='none')
    cfg.custom_hooks = cfg.custom_hooks[:1]
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler')
    with pytest.raises(
            GaPConfigError,
            match='needs a distributed run of a multiple of 2 '
            'processes'):
        Runner.from_cfg(cfg).train()


def _unpruned_combine_worker(rank, world, port, out_dir):
    """Every rank builds the combine over a sparsifier that never pruned:
    the source of partition 0 cannot send it sparse, and every rank, not
    only the source, must raise (before the fix the other rank waited in
    the mask broadcast until the process group's timeout)."""
    import datetime

    import torch.distributed as torch_dist

    from gap_mm.engine.parallel_gap import CombineExchange, covered_tensors
    from gap_mm.engine.rank_groups import group_layout
    from gap_mm.sparsity import Sparsifier
    from gap_mm.testing import GaPToyModel
    torch_dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60))
    torch.manual_seed(0)
    model = GaPToyModel()
    params = {
        n: p
        for n, p in model.named_parameters()
        if n.endswith('weight') and p.dim() > 1 and not n.startswith('head')
    }
    sparsifier = Sparsifier(params, sparsity=0.5, partitions=2)
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    exchange = CombineExchange(
        tensors,
        covered_tensors(model, sparsifier.partition_of, 2),
        torch.optim.SGD(model.parameters(), lr=0.1),
        group_layout(rank, world, 2),
        sparsifier=sparsifier)
    try:
        exchange.combine()
        message = None
    except RuntimeError as err:
        message = str(err)
    torch.save(message, osp.join(out_dir, f'unpruned{rank}.pt'))
    torch_dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_unpruned_source_stops_every_rank(tmp_path):
    messages = _run(tmp_path, 2, _unpruned_combine_worker, 'unpruned')
    for message in messages:
        assert message is not None
        assert 'rank 0 holds' in message and 'dense' in message, message
    assert 'conv.weight' in messages[0]  # the source names the weights


class _CombineNet(torch.nn.Module):
    """Layers of a few thousand weights; ``head`` in no partition."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 32, 3)
        self.bn = torch.nn.BatchNorm2d(32)
        self.fc1 = torch.nn.Linear(300, 120)
        self.fc2 = torch.nn.Linear(120, 64)
        self.head = torch.nn.Linear(64, 5)


def _combine_vs_before_worker(rank, world, port, out_dir):
    """Two copies of one rank's state, combined by today's exchange and by
    the one before issue 33; then today's digest check, passed and, after
    one sign bit changes on rank 1, failed on every rank."""
    import datetime
    import sys

    import torch.distributed as torch_dist

    from gap_mm.engine.dist_check import MaskDivergenceError
    from gap_mm.engine.parallel_gap import CombineExchange, covered_tensors
    from gap_mm.engine.rank_groups import group_layout
    from gap_mm.sparsity import MagnitudeSparsifier
    sys.path.insert(
        0, osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))),
                    'benchmarks'))
    from events_before import CombineExchangeBefore, SparsifierBefore
    torch_dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120))
    partitions = [[r'^conv\.', r'^bn\.'], [r'^fc1\.', r'^fc2\.']]
    layout = group_layout(rank, world, 2)

    def build(exchange_cls, sparsifier_cls):
        torch.manual_seed(rank)  # the groups trained different models
        model = _CombineNet()
        with torch.no_grad():
            model.bn.running_mean.normal_()
            model.bn.num_batches_tracked.fill_(7)
        params = {
            n: p
            for n, p in model.named_parameters()
            if n.endswith('weight') and p.dim() > 1 and
            not n.startswith('head')
        }
        sparsifier = sparsifier_cls(params, 0.7, partitions=partitions)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for p in model.parameters():
            opt.state[p]['momentum_buffer'] = torch.randn_like(p)
        sparsifier.prune([0, 1])
        sparsifier.grow([layout.group])  # this group's round, dense
        with torch.no_grad():
            for name in sparsifier.partitions[layout.group]:
                params[name].add_(torch.randn_like(params[name]))
        own = sparsifier.prune([layout.group])  # pruned back by GaPHook
        sparsifier.zero_optimizer_state_(opt, own)
        tensors = dict(model.named_parameters())
        tensors.update(model.named_buffers())
        exchange = exchange_cls(tensors,
                                covered_tensors(model,
                                                sparsifier.partition_of,
                                                partitions), opt, layout,
                                sparsifier)
        return model, opt, sparsifier, exchange

    result = {}
    for label, classes in (('before', (CombineExchangeBefore,
                                       SparsifierBefore)),
                           ('now', (CombineExchange, MagnitudeSparsifier))):
        model, opt, sparsifier, exchange = build(*classes)
        moved = exchange.combine()
        result[label] = dict(
            moved=moved,
            tensors={k: v.clone()
                     for k, v in model.state_dict().items()},
            momentum={
                n: opt.state[p]['momentum_buffer'].clone()
                for n, p in model.named_parameters()
            },
            masks={n: sparsifier.keep_mask(n)
                   for n in sparsifier.names})
    exchange.verify_identical('in the test')  # today's digests agree
    if rank == 1:
        with torch.no_grad():
            model.fc2.weight.view(-1)[3].neg_()
    try:
        exchange.verify_identical('in the test')
        result['diverged'] = None
    except MaskDivergenceError as err:
        result['diverged'] = str(err)
    torch.save(result, osp.join(out_dir, f'combine{rank}.pt'))
    torch_dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_combine_matches_the_exchange_before_bit_for_bit(tmp_path):
    results = _run(tmp_path, 2, _combine_vs_before_worker, 'combine')
    for rank, result in enumerate(results):
        old, new = result['before'], result['now']
        assert new['moved'] == old['moved']
        for part in ('tensors', 'momentum', 'masks'):
            assert list(new[part]) == list(old[part])
            for key, value in old[part].items():
                assert torch.equal(new[part][key], value), (rank, part, key)
                # and every rank holds the same combined model
                assert torch.equal(results[0]['now'][part][key],
                                   new[part][key]), (rank, part, key)
        assert 'fc2.weight' in result['diverged'], result['diverged']
        assert 'conv.weight' not in result['diverged']
