# Copyright (c) gap_mm contributors. All rights reserved.
"""Hooks for tests, registered in MMEngine's ``HOOKS`` when this module is
imported: name ``'gap_mm.testing.hooks'`` in a config's ``custom_imports``
(subprocess tests) or import it (in-process tests). ``import gap_mm`` does
not import it.
"""
import os
import os.path as osp
import random
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from gap_mm.engine.hooks.base_sparsity_hook import BaseSparsityHook

#: Environment variable that :class:`KillAfterIterHook` reads when it is
#: given no iteration, so one config can be run with and without the kill.
KILL_ENV = 'GAP_TEST_DIE_AFTER'


class KilledForTest(Exception):
    """Raised by :class:`KillAfterIterHook` in its soft mode."""


@HOOKS.register_module()
class KillAfterIterHook(Hook):
    """Ends a run right after the checkpoint of iteration ``iteration``, as
    a killed job would.

    Priority ``LOWEST``: it runs after CheckpointHook has saved.

    Args:
        iteration (int, optional): The 1-based iteration after which to
            stop. None reads ``$GAP_TEST_DIE_AFTER`` (no kill if unset).
        hard (bool): ``os._exit(137)`` like ``kill -9`` (for subprocess
            tests); else raise :class:`KilledForTest`. Defaults to False.
    """

    priority = 'LOWEST'

    def __init__(self,
                 iteration: Optional[int] = None,
                 hard: bool = False) -> None:
        self.iteration = iteration
        self.hard = hard

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        iteration = self.iteration
        if iteration is None:
            iteration = int(os.environ.get(KILL_ENV, -1))
        if runner.iter + 1 == iteration:
            if self.hard:
                os._exit(137)
            raise KilledForTest(f'killed after iteration {iteration}')


@HOOKS.register_module()
class DumpRankMasksHook(Hook):
    """After training, saves each rank's keep-masks (None for a dense
    layer) to ``work_dir/masks_rank<r>.pth``. Priority ``LOWEST``, after the
    sparsity hook and every other hook."""

    priority = 'LOWEST'

    def after_train(self, runner) -> None:
        hook = next(h for h in runner.hooks if isinstance(h, BaseSparsityHook))
        sp = hook.sparsifier
        masks = {n: sp.keep_mask(n) for n in sp.names}
        torch.save(masks,
                   osp.join(runner.work_dir, f'masks_rank{get_rank()}.pth'))


@HOOKS.register_module()
class SeedEveryStepHook(Hook):
    """Re-seeds Python's, numpy's and torch's global generators at the start
    of every epoch and every iteration, from the run's seed and the step.

    MMEngine saves no random-generator state in a checkpoint, so a resumed
    run draws other random numbers than the run it continues (mmdet's
    ``RandomSampler`` of the R-CNNs, dropout, random transforms) and cannot
    match it bit for bit, whatever a sparsity hook restores. With this hook
    every draw is a function of the step (and of what the step computes),
    so an epoch-based run resumed from an epoch checkpoint must match the
    uninterrupted run exactly if, and only if, everything else it needs
    (weights, optimizer, EMA, masks, schedule position) was restored.

    Priority ``HIGHEST``: the seeds are set before any other hook or the
    data loader draws.
    """

    priority = 'HIGHEST'

    def _seed(self, runner, step: int, salt: int) -> None:
        seed = (int(runner.seed or 0) * 1000003 + 2 * step + salt) % 2**31
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def before_train_epoch(self, runner) -> None:
        self._seed(runner, runner.epoch, 1)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._seed(runner, runner.iter, 0)
