# Copyright (c) gap_mm contributors. All rights reserved.
"""The rank-group side of parallel GaP (P-GaP), used by GaPHook.

K rank groups of consecutive ranks train at the same time, group ``g`` with
partition ``g`` dense. Inside a round DDP averages gradients within the
group only (a comm hook on MMEngine's DDP wrapper); at the end of a round
every rank takes part in the combine:

* group ``k`` prunes its dense partition back by magnitude; then every
  parameter and buffer that partition ``k`` covers, its masks and its
  optimizer state are broadcast from the first rank of group ``k`` (the
  masked weights as bits and kept values);
* everything no partition covers (an excluded stem or output layer, ...) is
  averaged over all ranks, optimizer state included;
* then a digest of all weights, buffers, optimizer state and masks is
  compared across ranks.

In the fine-tune all ranks train one model with world-wide averaging.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.distributed as torch_dist
from mmengine import dist as mm_dist
from mmengine.hooks import CheckpointHook, EMAHook
from mmengine.model import is_model_wrapper
from mmengine.runner import IterBasedTrainLoop
from torch import nn

from gap_mm.errors import GaPConfigError
from gap_mm.sparsity import flat_nonzero
from gap_mm.utils.digest import tensor_digest
from .dist_check import MaskDivergenceError
from .rank_groups import GroupLayout, RankGroups
from .samplers import GroupDefaultSampler, GroupInfiniteSampler


def covered_tensors(model: nn.Module, prunable: Mapping[str, int],
                    partitions) -> Dict[str, Optional[int]]:
    """Which partition covers each parameter and buffer of ``model`` (None:
    no partition, so it is averaged at a combine).

    With regex partitions (a list), a tensor is covered by the partition
    whose regexes match its name (:func:`re.search`), as the partitions
    select prunable weights. With automatic partitions (an int), a
    prunable layer's own tensors (weight, bias) are its partition's, and the
    tensors of the modules that follow it in model order (its norm layer,
    ...) belong to it until the next conv or linear layer; an excluded
    layer and what follows it are covered by none.

    Args:
        model (nn.Module): The unwrapped model.
        prunable (Mapping[str, int]): Partition of every prunable weight.
        partitions (int | list): The hook's ``partitions``.

    Raises:
        GaPConfigError: If a tensor matches the regexes of two partitions.
    """
    names = [n for n, _ in model.named_parameters()
             ] + [n for n, _ in model.named_buffers()]
    owner: Dict[str, Optional[int]] = OrderedDict()
    if isinstance(partitions, (list, tuple)):
        regexes = [[re.compile(p) for p in ([g] if isinstance(g, str) else g)]
                   for g in partitions]
        doubled = []
        for name in names:
            hits = [
                k for k, group in enumerate(regexes) if any(
                    r.search(name) for r in group)
            ]
            if len(hits) > 1:
                doubled.append(f'{name} (partitions {hits})')
            owner[name] = hits[0] if hits else None
        if doubled:
            raise GaPConfigError(
                'parallel GaP needs every parameter and buffer in at most '
                'one partition, but these match the regexes of two: ' +
                ', '.join(doubled[:5]))
        return owner
    layer_types = (nn.modules.conv._ConvNd, nn.Linear)
    current: Optional[int] = None
    for module_name, module in model.named_modules():
        prefix = f'{module_name}.' if module_name else ''
        weight = f'{prefix}weight'
        if weight in prunable:
            current = prunable[weight]
        elif isinstance(module, layer_types):
            current = None  # an excluded layer starts an uncovered run
        for name, _ in list(module.named_parameters(recurse=False)) + list(
                module.named_buffers(recurse=False)):
            owner[prefix + name] = current
    return OrderedDict((n, owner.get(n)) for n in names)


def _exchange(views, op, fill: bool = True, copy_back: bool = True) -> int:
    """Run ``op`` on one flat buffer per dtype of the ``(tensor, index)``
    pairs ``views`` and copy the result back into them. A pair with an
    ``index`` (flat positions of the kept values) contributes only those
    values, and gets them back scattered into zeros; ``index`` None takes
    the whole tensor. With ``fill=False`` (a broadcast's receivers) the
    buffer starts empty; with ``copy_back=False`` (its source, whose values
    do not change) nothing is written back. Returns the bytes of the
    payload.

    The buffer lives on the backend's device (CUDA for NCCL): optimizer
    state may sit elsewhere (Adam's ``step`` stays on the CPU unless
    ``capturable``), and NCCL sends CUDA tensors only."""
    by_dtype: Dict[torch.dtype, list] = OrderedDict()
    for tensor, index in views:
        by_dtype.setdefault(tensor.dtype, []).append((tensor, index))
    device = torch.device(mm_dist.get_comm_device())
    sent = 0
    with torch.no_grad():
        for dtype, group in by_dtype.items():
            sizes = [t.numel() if i is None else i.numel() for t, i in group]
            flat = torch.empty(sum(sizes), dtype=dtype, device=device)
            chunks = flat.split(sizes)
            if fill:
                for (t, index), chunk in zip(group, chunks):
                    values = t.detach().reshape(-1)
                    if index is not None and values.device == device:
                        torch.index_select(values, 0, index, out=chunk)
                    elif index is not None:
                        chunk.copy_(values.index_select(0, index))
                    else:
                        chunk.copy_(values)
            op(flat)
            sent += flat.numel() * flat.element_size()
            if not copy_back:
                continue
            for (t, index), chunk in zip(group, chunks):
                target = t.data
                if index is None:
                    target.copy_(chunk.view_as(target))
                elif target.is_contiguous():
                    target = target.view(-1)
                    target.zero_()
                    target.index_copy_(0, index, chunk.to(target.device))
                else:
                    values = torch.zeros(
                        target.numel(), dtype=dtype, device=target.device)
                    values.index_copy_(0, index, chunk.to(target.device))
                    target.copy_(values.view_as(target))
    return sent


def group_sampler_cfg(schedule, batch_size: int) -> dict:
    """The train sampler a parallel schedule needs (``batch_size`` per
    process): each group reads the whole set during the rounds."""
    k, end = schedule.num_partitions, schedule.gap_end
    if schedule.by_epoch:
        return dict(type='GroupDefaultSampler', num_groups=k, group_epochs=end)
    return dict(
        type='GroupInfiniteSampler',
        num_groups=k,
        group_samples=end * batch_size)


def check_group_sampler(schedule, sampler, batch_size: int) -> None:
    """Raise unless ``sampler`` is the group-aware sampler ``schedule``
    needs (see :func:`group_sampler_cfg`), naming the settings to use."""
    want = group_sampler_cfg(schedule, batch_size)
    kind = GroupDefaultSampler if schedule.by_epoch else GroupInfiniteSampler
    if not isinstance(sampler, kind):
        raise GaPConfigError(
            f'parallel GaP needs each rank group to read the whole training '
            f'set: set train_dataloader.sampler={want} (got '
            f'{type(sampler).__name__})')
    got = {key: getattr(sampler, key) for key in want if key != 'type'}
    if got != {key: v for key, v in want.items() if key != 'type'}:
        raise GaPConfigError(
            f'the {kind.__name__} does not match the P-GaP schedule: it has '
            f'{got}, the schedule needs {want}')


def check_interval(schedule, key: str, interval: int, begin: int = 1) -> None:
    """Raise if validating or saving every ``interval`` steps (from
    ``begin``) would fall between two combines, where the rank groups hold
    different models."""
    period, end = schedule.period, schedule.gap_end
    inside = [
        s for s in range(interval, end, interval) if s >= begin and s % period
    ]
    if inside:
        raise GaPConfigError(
            f'{key}={interval} would validate or save between combines '
            f'(after {schedule.unit} {inside[0]}), where the rank groups '
            f'hold different models; use a multiple of the period {period}, '
            f'or a value of at least {end}')


class _GroupAllReduce:
    """DDP comm-hook state: average over ``group`` (None: the world)."""

    def __init__(self) -> None:
        self.group = None

    @staticmethod
    def hook(state: '_GroupAllReduce',
             bucket) -> torch.futures.Future[torch.Tensor]:
        buffer = bucket.buffer()
        buffer.div_(torch_dist.get_world_size(state.group))
        work = torch_dist.all_reduce(buffer, group=state.group, async_op=True)
        return work.get_future().then(lambda fut: fut.value()[0])


class ParallelGaP:
    """Rank groups, group-wise gradient averaging and the combine of one
    P-GaP run.

    Args:
        runner: The Runner (distributed, MMEngine's DDP wrapper).
        hook: The GaPHook, with its sparsifier and parallel schedule.

    Raises:
        GaPConfigError: For a run that cannot train P-GaP: one process, a
            world that is not a multiple of K, a model not wrapped in
            MMEngine's DDP, DDP broadcasting buffers, SyncBatchNorm, an
            EMAHook, a sampler that is not group-aware or does not match the
            schedule, or validation / checkpoints inside a round.
    """

    def __init__(self, runner, hook) -> None:
        self.schedule = hook.schedule
        self.sparsifier = hook.sparsifier
        k = self.schedule.num_partitions
        self.groups = RankGroups(k)
        self.layout = self.groups.layout
        self.group = self.layout.group
        self._check_model(runner)
        self._check_sampler(runner)
        self._check_intervals(runner)
        model = hook.unwrap_model(runner)  # DDP, checked above
        self.tensors: Dict[str, torch.Tensor] = OrderedDict(
            list(model.named_parameters()) + list(model.named_buffers()))
        self.owner = covered_tensors(model, self.sparsifier.partition_of,
                                     hook.partitions)
        for name, part in self.sparsifier.partition_of.items():
            if self.owner.get(name) != part:
                raise GaPConfigError(
                    f'{name} is in partition {part} but its tensors are '
                    f'covered by {self.owner.get(name)}')
        self.exchange = CombineExchange(self.tensors, self.owner,
                                        runner.optim_wrapper.optimizer,
                                        self.layout, self.sparsifier)
        self._comm = _GroupAllReduce()
        runner.model.register_comm_hook(self._comm, _GroupAllReduce.hook)

    # ------------------------------------------------------------ checks
    def _check_model(self, runner) -> None:
        model = runner.model
        if not (is_model_wrapper(model) and isinstance(
                model, torch.nn.parallel.DistributedDataParallel)):
            raise GaPConfigError(
                f'parallel GaP averages gradients within rank groups through '
                f'a DDP comm hook, so the model must be wrapped in '
                f"MMEngine's MMDistributedDataParallel, not "
                f'{type(model).__name__}')
        if getattr(model, 'broadcast_buffers', False):
            raise GaPConfigError(
                'parallel GaP keeps a model per rank group, but DDP '
                'broadcasts rank 0\'s buffers to every rank: set '
                "model_wrapper_cfg=dict(type='MMDistributedDataParallel', "
                'broadcast_buffers=False)')
        sync = [
            n for n, m in model.module.named_modules()
            if isinstance(m, nn.SyncBatchNorm)
        ]
        if sync:
            raise GaPConfigError(
                f'parallel GaP keeps a model per rank group, but '
                f'SyncBatchNorm syncs statistics over every rank: {sync[:3]}.'
                f" Use norm_cfg=dict(type='BN') in the config.")
        if any(isinstance(h, EMAHook) for h in runner.hooks):
            raise GaPConfigError(
                'parallel GaP does not support EMAHook: between combines the '
                'rank groups hold different models')

    def _sampler(self, runner):
        loader = runner.train_dataloader
        sampler = getattr(loader, 'sampler', None)
        batch_sampler = getattr(loader, 'batch_sampler', None)
        inner = getattr(batch_sampler, 'sampler', None)
        for candidate in (inner, sampler):
            if isinstance(candidate,
                          (GroupInfiniteSampler, GroupDefaultSampler)):
                return candidate
        return inner or sampler

    def _check_sampler(self, runner) -> None:
        check_group_sampler(self.schedule, self._sampler(runner),
                            runner.train_dataloader.batch_size)

    def _check_intervals(self, runner) -> None:
        loop = runner.train_loop
        val_interval = getattr(loop, 'val_interval', None)
        if runner.val_loop is not None and val_interval:
            check_interval(self.schedule, 'train_cfg.val_interval',
                           val_interval, getattr(loop, 'val_begin', 1))
        for h in runner.hooks:
            if isinstance(h, CheckpointHook) and h.interval > 0:
                by_epoch = h.by_epoch and not isinstance(
                    loop, IterBasedTrainLoop)
                if by_epoch == self.schedule.by_epoch:
                    check_interval(self.schedule,
                                   'default_hooks.checkpoint.interval',
                                   h.interval)

    # ------------------------------------------------------------ phases
    def sync_group(self, step: int):
        """The process group whose ranks hold one model at ``step``."""
        return self.groups.mine if step < self.schedule.gap_end else None

    def set_step(self, step: int) -> None:
        """Average gradients within the group in the rounds, over the world
        in the fine-tune."""
        self._comm.group = self.sync_group(step)

    def combine(self) -> Dict[str, int]:
        """See :meth:`CombineExchange.combine`."""
        return self.exchange.combine()

    def verify_identical(self, where: str) -> None:
        """See :meth:`CombineExchange.verify_identical`."""
        self.exchange.verify_identical(where)


class CombineExchange:
    """The collectives of a P-GaP combine, on the default (world) group.

    With a ``sparsifier``, the prunable weights of a partition travel
    sparse: the owning group prunes its partition back *before* the combine
    (the same magnitude prune every rank would make after it), and its
    leader broadcasts the masks (1 bit per weight) and then only the kept
    values of the weights and of their same-shaped optimizer state; every
    other rank sets those masks and scatters the values, zero elsewhere. At
    80% sparsity with SGD momentum that is about 0.4 of a dense model's
    bytes for the weights and their state, instead of 2.

    Args:
        tensors (Mapping[str, Tensor]): Every parameter and buffer of the
            model by name (parameters first).
        owner (Mapping[str, int | None]): The partition covering each (see
            :func:`covered_tensors`).
        optimizer (Optimizer): Its per-parameter state goes with the
            parameter.
        layout (GroupLayout): This rank's place among the groups.
        sparsifier (Sparsifier, optional): The masks of the prunable
            weights, pruned on the owning group before :meth:`combine`.
            None sends every tensor dense.
    """

    def __init__(self,
                 tensors: Mapping[str, torch.Tensor],
                 owner: Mapping[str, Optional[int]],
                 optimizer: torch.optim.Optimizer,
                 layout: GroupLayout,
                 sparsifier=None) -> None:
        self.tensors = OrderedDict(tensors)
        self.owner = OrderedDict(owner)
        self.optimizer = optimizer
        self.layout = layout
        self.sparsifier = sparsifier
        self.names = [
            n for n, t in self.tensors.items() if isinstance(t, nn.Parameter)
        ]

    # ----------------------------------------------------------- combine
    def _state_tensors(self, names: Sequence[str]) -> List[torch.Tensor]:
        out = []
        for name in names:
            state = self.optimizer.state.get(self.tensors[name])
            for key in sorted(state or {}):
                if isinstance(state[key], torch.Tensor):
                    out.append(state[key])
        return out

    def _sparse_names(self, names: Sequence[str]) -> List[str]:
        if self.sparsifier is None:
            return []
        return [n for n in names if n in self.sparsifier.params]

    def _exchange_masks(self, names: Sequence[str],
                        src: int) -> Dict[str, torch.Tensor]:
        """Broadcast the keep masks of ``names`` from ``src`` as bits; set
        them on this rank's sparsifier; return the flat positions of each
        layer's kept weights (int64, on its device)."""
        numels = [self.tensors[n].numel() for n in names]
        total = sum(numels)
        device = mm_dist.get_comm_device()  # NCCL sends CUDA tensors only
        # the source alone can see the precondition; every rank must learn
        # that it failed, or the others would wait in the broadcast forever
        missing = [] if torch_dist.get_rank() != src else [
            n for n in names if not self.sparsifier.is_sparse(n)
        ]
        failed = torch.tensor([len(missing)], dtype=torch.int64)
        mm_dist.all_reduce(failed, op='max')
        if int(failed):
            named = (f': {missing[:5]}{" ..." if len(missing) > 5 else ""}'
                     if missing else f' (rank {src}\'s error names them)')
            raise RuntimeError(
                f'the combine sends partitions pruned, but rank {src} holds '
                f'{int(failed)} of their weights dense{named}; prune them '
                f'on their group before the combine')
        if torch_dist.get_rank() == src:
            keep = torch.cat([
                self.sparsifier.keep_mask(n).reshape(-1).cpu() for n in names
            ])
            packed = torch.from_numpy(np.packbits(keep.numpy())).to(device)
        else:
            packed = torch.empty((total + 7) // 8,
                                 dtype=torch.uint8,
                                 device=device)
        torch_dist.broadcast(packed, src=src)
        if torch_dist.get_rank() != src:
            keep = torch.from_numpy(
                np.unpackbits(packed.cpu().numpy(),
                              count=total)).view(torch.bool)
            self.sparsifier.set_keep_masks(
                OrderedDict((n, m.view(self.tensors[n].shape))
                            for n, m in zip(names, keep.split(numels))),
                zero_weights=False)  # the exchange overwrites them
        return OrderedDict(
            (n, flat_nonzero(m).to(self.tensors[n].device))
            for n, m in zip(names, keep.split(numels)))

    def _partition_views(self, names: Sequence[str],
                         positions: Mapping[str, torch.Tensor]):
        """``(tensor, index)`` pairs to exchange for ``names``: the kept
        values (flat ``index``) of a masked weight and of its same-shaped
        optimizer state, the whole of everything else (``index`` None)."""
        params = set(self.names)
        views = []
        for name in names:
            index = positions.get(name)
            views.append((self.tensors[name], index))
            if name not in params:
                continue
            for t in self._state_tensors([name]):
                same = t.shape == self.tensors[name].shape
                views.append(
                    (t, None if index is None or not same else index.to(
                        t.device)))
        return views

    def combine(self) -> Dict[str, int]:
        """Make every rank hold the combined model; return the bytes of
        the payloads, roughly what a rank receives (``broadcast``: the
        masks and the partitions' values; ``allreduce``: the averaged
        uncovered tensors)."""
        k_parts = self.layout.num_groups
        world = torch_dist.get_world_size()
        params = set(self.names)
        moved = dict(broadcast=0, allreduce=0)
        for k in range(k_parts):
            names = [n for n, o in self.owner.items() if o == k]
            src = self.layout.leader(k)
            sparse = self._sparse_names(names)
            positions = self._exchange_masks(sparse, src) if sparse else {}
            moved['broadcast'] += (sum(self.tensors[n].numel()
                                       for n in sparse) + 7) // 8
            views = self._partition_views(names, positions)
            self._check_layout([t if i is None else i for t, i in views],
                               f'partition {k}')
            source = torch_dist.get_rank() == src
            moved['broadcast'] += _exchange(
                views,
                lambda flat: torch_dist.broadcast(flat, src=src),
                fill=source,
                copy_back=not source)
        names = [n for n, o in self.owner.items() if o is None]
        tensors = [self.tensors[n] for n in names] + self._state_tensors(
            [n for n in names if n in params])
        self._check_layout(tensors, 'the uncovered tensors')
        floats = [t for t in tensors if t.is_floating_point()]
        others = [t for t in tensors if not t.is_floating_point()]

        def mean(flat):
            torch_dist.all_reduce(flat)
            flat.div_(world)

        _exchange([(t, None) for t in floats], mean)
        # integer buffers (BN's num_batches_tracked) cannot be averaged;
        # every rank counted the same batches
        _exchange([(t, None) for t in others],
                  lambda f: torch_dist.broadcast(f, src=0),
                  fill=torch_dist.get_rank() == 0)
        moved['allreduce'] = sum(t.numel() * t.element_size() for t in floats)
        return moved

    def _check_layout(self, tensors: Sequence[torch.Tensor],
                      what: str) -> None:
        """All ranks must exchange buffers of the same size, or the
        collectives would mix tensors (or hang)."""
        count = torch.tensor([sum(t.numel() for t in tensors)],
                             dtype=torch.int64)
        both = torch.cat([count, -count])
        mm_dist.all_reduce(both, op='max')
        if int(both[0]) != -int(both[1]):
            raise GaPConfigError(
                f'the ranks hold {what} with different numbers of values '
                f'({-int(both[1])} to {int(both[0])}), e.g. optimizer state '
                f'that exists on some ranks only; the combine cannot pair '
                f'them')

    def verify_identical(self, where: str) -> None:
        """Compare digests of every weight, buffer and optimizer state
        tensor over the world; raise naming what differs."""
        names = list(self.tensors)
        params = set(self.names)
        rows = []
        for name in names:
            row = [tensor_digest(self.tensors[name])]
            if name in params:
                row += [tensor_digest(t) for t in self._state_tensors([name])]
            rows.append(sum(row) & ((1 << 63) - 1))
        local = torch.tensor(rows, dtype=torch.int64)
        both = torch.stack([local, -local])
        mm_dist.all_reduce(both, op='max')
        differs = (both[0] != -both[1]).nonzero().flatten().tolist()
        if differs:
            bad = [names[i] for i in differs]
            raise MaskDivergenceError(
                f'after the P-GaP combine {where} the ranks hold different '
                f'values in {len(bad)} tensor(s): {bad[:5]}'
                f'{" ..." if len(bad) > 5 else ""}')
