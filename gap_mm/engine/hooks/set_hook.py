# Copyright (c) gap_mm contributors. All rights reserved.
from typing import Any, Dict, Iterator, Mapping

import torch
from mmengine.registry import HOOKS

from gap_mm.sparsity import RandomScore
from .drop_grow_hook import DropGrowHook


class _ScoresOnAccess(Mapping):
    """The random scores of named parameters, each drawn when it is read,
    into one buffer: a value is valid until the next one is read, which is
    how :meth:`DropGrowHook.update` reads them (a layer at a time)."""

    def __init__(self, score: RandomScore,
                 params: Mapping[str, torch.Tensor]) -> None:
        self.score, self.params = score, params
        self._buffer = torch.empty(
            max((p.numel() for p in params.values()), default=0))

    def __getitem__(self, name: str) -> torch.Tensor:
        param = self.params[name]
        out = self._buffer[:param.numel()].view(param.shape)
        return self.score(name, param, out=out)

    def __iter__(self) -> Iterator[str]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)


@HOOKS.register_module()
class SETHook(DropGrowHook):
    """SET, sparse evolutionary training (Mocanu et al., Nature
    Communications 2018).

    A :class:`DropGrowHook` that grows inactive weights at random: the
    scores of an update are drawn from the run's seed and the iteration
    (:class:`~gap_mm.sparsity.RandomScore`; the seed is
    :attr:`~BaseMethodHook.run_seed`, rank 0's, kept in the checkpoint), so
    every rank grows the same weights and a resumed run the same ones as an
    uninterrupted run. The
    drop fraction is constant by default (SET's ζ).

    Args:
        **kwargs: The options of :class:`DropGrowHook` (``end``,
            ``interval``, ``drop_fraction``, ``decay='constant'``,
            ``begin``, ``init='random'``) and of :class:`BaseSparsityHook`.
    """

    method_name = 'SET'
    default_decay = 'constant'

    def grow_scores(self, runner, step: int) -> Mapping[str, torch.Tensor]:
        score = RandomScore(seed=self.run_seed * 1000003 + step)
        sp = self.sparsifier
        return _ScoresOnAccess(
            score, {n: sp.params[n]
                    for n in sp.names if sp.is_sparse(n)})

    def method_state(self) -> Dict[str, Any]:
        return dict(seed=self.run_seed)

    def load_method_state(self, state: Mapping[str, Any]) -> None:
        if state.get('seed') is not None:
            self.run_seed = int(state['seed'])
