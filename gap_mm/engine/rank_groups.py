# Copyright (c) gap_mm contributors. All rights reserved.
"""Rank groups of parallel GaP: which ranks train which partition dense."""
from typing import List, NamedTuple, Optional

import torch.distributed as torch_dist
from mmengine import dist

from gap_mm.errors import GaPConfigError


class GroupLayout(NamedTuple):
    """Where a rank sits among ``num_groups`` groups of consecutive ranks:
    group ``g`` is ranks ``[g * size, (g + 1) * size)``."""
    group: int
    rank_in_group: int
    size: int
    num_groups: int

    def leader(self, group: int) -> int:
        """The global rank that speaks for ``group`` (its first)."""
        return group * self.size


def group_layout(rank: int, world_size: int, num_groups: int) -> GroupLayout:
    """The :class:`GroupLayout` of ``rank``.

    Raises:
        GaPConfigError: If the world is not a multiple of ``num_groups``.
    """
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) \
            or num_groups < 1:
        raise GaPConfigError(
            f'num_groups must be a positive int, but got {num_groups!r}')
    if world_size % num_groups:
        fitting = [k for k in range(2, world_size + 1) if world_size % k == 0]
        other_k = (f' or use {" or ".join(map(str, fitting))} partitions '
                   f'(a number that divides {world_size})') if fitting else ''
        raise GaPConfigError(
            f'parallel GaP splits the {world_size} processes into '
            f'{num_groups} rank groups (one per partition), but '
            f'{world_size} is not a multiple of {num_groups}; launch a '
            f'multiple of {num_groups} processes (tools/dist_train.sh CONFIG '
            f'{num_groups * max(1, world_size // num_groups)}){other_k}')
    size = world_size // num_groups
    return GroupLayout(rank // size, rank % size, size, num_groups)


class RankGroups:
    """The torch.distributed process groups of parallel GaP.

    Every rank creates every group, in the same order (as
    ``torch.distributed.new_group`` requires), and keeps its own.

    Args:
        num_groups (int): K.
    """

    def __init__(self, num_groups: int) -> None:
        if not dist.is_distributed():
            raise GaPConfigError(
                f'parallel GaP trains {num_groups} rank groups at once and '
                f'needs a distributed run of a multiple of {num_groups} '
                f'processes (tools/dist_train.sh CONFIG {num_groups}, '
                f'--launcher pytorch); this run has one process. Use '
                f"schedule=dict(type='cyclic', ...) on one process.")
        self.layout = group_layout(dist.get_rank(), dist.get_world_size(),
                                   num_groups)
        self.groups: List[Optional[object]] = []
        for g in range(num_groups):
            ranks = list(
                range(g * self.layout.size, (g + 1) * self.layout.size))
            self.groups.append(torch_dist.new_group(ranks=ranks))

    @property
    def mine(self):
        """This rank's process group."""
        return self.groups[self.layout.group]
