# Copyright (c) gap_mm contributors. All rights reserved.
"""Samplers that shard data over a parallel-GaP rank group, then the world.

During P-GaP's rounds each rank group trains a model of its own on the
whole training set, sharded over the group's ranks (every group reads the
same sequence, as the reference's K jobs with one seed do); in the
fine-tune all ranks train one model on a world-wide sharding. Which sharding
a sample position gets is a pure function of that position (or epoch), so
MMEngine's resume, which skips the batches already trained, replays exactly
the same data.
"""
import itertools
import math
from typing import Iterator, Optional, Sized

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.registry import DATA_SAMPLERS
from torch.utils.data import Sampler

from gap_mm.errors import GaPConfigError
from ..rank_groups import group_layout


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GaPConfigError(f'{name} must be an int >= 0, but got {value!r}')
    return value


@DATA_SAMPLERS.register_module()
class GroupInfiniteSampler(Sampler):
    """:class:`~mmengine.dataset.InfiniteSampler` for parallel GaP,
    iteration-based runs.

    The first ``group_samples`` indices of every rank come from an infinite
    shuffled sequence sharded over the rank's group; the rest continue the
    same sequence sharded over the world.

    Args:
        dataset (Sized): The dataset.
        num_groups (int): K, the number of rank groups (partitions).
        group_samples (int): Samples per rank in the rounds: the P-GaP
            rounds' iterations times the batch size per GPU.
        shuffle (bool): Defaults to True.
        seed (int, optional): The same on every rank; None draws one and
            syncs it.

    Examples:
        >>> train_dataloader = dict(batch_size=8, sampler=dict(
        >>>     type='GroupInfiniteSampler', num_groups=2,
        >>>     group_samples=8 * 1600))
    """

    def __init__(self,
                 dataset: Sized,
                 num_groups: int,
                 group_samples: int,
                 shuffle: bool = True,
                 seed: Optional[int] = None) -> None:
        self.rank, self.world_size = get_dist_info()
        self.layout = group_layout(self.rank, self.world_size, num_groups)
        self.num_groups = num_groups
        self.group_samples = _check_count(group_samples, 'group_samples')
        self.dataset = dataset
        self.size = len(dataset)
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else seed
        self.indices = self._indices_of_rank()

    def _infinite_indices(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed)
        while True:
            if self.shuffle:
                yield from torch.randperm(self.size, generator=gen).tolist()
            else:
                yield from range(self.size)

    def _indices_of_rank(self) -> Iterator[int]:
        stream = self._infinite_indices()
        layout = self.layout
        # the rounds: the group's ranks take turns along the sequence
        group_part = itertools.islice(stream, layout.size * self.group_samples)
        yield from itertools.islice(group_part, layout.rank_in_group, None,
                                    layout.size)
        # the fine-tune: the world takes turns along what follows
        yield from itertools.islice(stream, self.rank, None, self.world_size)

    def __iter__(self) -> Iterator[int]:
        yield from self.indices

    def __len__(self) -> int:
        return self.size


@DATA_SAMPLERS.register_module()
class GroupDefaultSampler(Sampler):
    """:class:`~mmengine.dataset.DefaultSampler` for parallel GaP,
    epoch-based runs: epochs before ``group_epochs`` are sharded over the
    rank's group, the later ones over the world.

    Args:
        dataset (Sized): The dataset.
        num_groups (int): K, the number of rank groups (partitions).
        group_epochs (int): Epochs of the P-GaP rounds (period x rounds).
        shuffle (bool): Defaults to True.
        seed (int, optional): The same on every rank; None draws one and
            syncs it.
        round_up (bool): Pad the shards to equal size. Defaults to True.
    """

    def __init__(self,
                 dataset: Sized,
                 num_groups: int,
                 group_epochs: int,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 round_up: bool = True) -> None:
        self.rank, self.world_size = get_dist_info()
        self.layout = group_layout(self.rank, self.world_size, num_groups)
        self.num_groups = num_groups
        self.group_epochs = _check_count(group_epochs, 'group_epochs')
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else seed
        self.round_up = round_up
        self.epoch = 0

    def _shard(self):
        """``(rank, replicas)`` of the current epoch's sharding."""
        if self.epoch < self.group_epochs:
            return self.layout.rank_in_group, self.layout.size
        return self.rank, self.world_size

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            indices = torch.randperm(len(self.dataset), generator=gen).tolist()
        else:
            indices = list(range(len(self.dataset)))
        rank, replicas = self._shard()
        if self.round_up:
            total = math.ceil(len(indices) / replicas) * replicas
            indices = (indices * (total // len(indices) + 1))[:total]
        return iter(indices[rank::replicas])

    def __len__(self) -> int:
        rank, replicas = self._shard()
        if self.round_up:
            return math.ceil(len(self.dataset) / replicas)
        return math.ceil((len(self.dataset) - rank) / replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
