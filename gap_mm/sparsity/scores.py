# Copyright (c) gap_mm contributors. All rights reserved.
"""Importance scores: what a prune ranks weights by (larger survives).

A score is any callable ``score(name, param) -> Tensor`` of the parameter's
shape. The ones here are registered in :data:`gap_mm.registry.SCORES`, so a
config picks one with ``dict(type='magnitude')`` and a user adds their own
with ``@SCORES.register_module()``.
"""
import zlib
from typing import Callable, Mapping, Optional, Union

import torch

from gap_mm.errors import GaPConfigError
from gap_mm.registry import SCORES, build_registered

Score = Callable[[str, torch.Tensor], torch.Tensor]


@SCORES.register_module(name=['magnitude', 'MagnitudeScore'])
class MagnitudeScore:
    """``|w|``: the magnitude pruning of GaP, GMP and RigL's drop."""

    def __call__(self, name: str, param: torch.Tensor) -> torch.Tensor:
        return param.detach().abs()

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'


@SCORES.register_module(name=['random', 'RandomScore'])
class RandomScore:
    """Uniform random scores, the same on every rank and every run.

    The values of a parameter depend only on ``seed`` and its name (CRC-32,
    stable across processes, unlike ``hash``), and are drawn on the CPU, so
    every rank of a distributed run, and a resumed run, draws the same
    ones on any device. Used for a static random mask and for SET's random
    growth.

    Args:
        seed (int): Base seed. Defaults to 0.
    """

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise GaPConfigError(f'RandomScore seed must be an int, but got '
                                 f'{seed!r}')
        self.seed = seed

    def __call__(self,
                 name: str,
                 param: torch.Tensor,
                 out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The scores of ``param``.

        Args:
            name (str): The parameter's name.
            param (Tensor): The parameter.
            out (Tensor, optional): A contiguous CPU float32 tensor of
                ``param``'s shape to draw into (the same values), saving
                an allocation. Defaults to None.
        """
        gen = torch.Generator().manual_seed(
            (self.seed * 1000003 + zlib.crc32(name.encode())) % (2**63))
        return torch.rand(
            param.shape, generator=gen, out=out).to(param.device)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(seed={self.seed})'


def build_score(cfg: Union[Mapping, Score, None]) -> Score:
    """A score from ``dict(type=...)``, a callable, or None (magnitude)."""
    if cfg is None:
        return MagnitudeScore()
    if callable(cfg) and not isinstance(cfg, Mapping):
        return cfg
    return build_registered(SCORES, cfg, 'score', GaPConfigError)
