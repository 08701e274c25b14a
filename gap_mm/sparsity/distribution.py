# Copyright (c) gap_mm contributors. All rights reserved.
"""How a target sparsity is split over layers.

Every function returns the number of weights each layer *keeps*, so counts
are exact integers: a layer of ``n`` weights at sparsity ``s`` keeps
``n - round(s * n)``.

* ``uniform``: every layer at ``s``.
* ``global``: one magnitude threshold over all layers together ("non-uniform"
  in the GaP paper); the total keeps ``N - round(s * N)``.
* ``erk``: Erdős–Rényi-kernel densities as in RigL (Evci et al., 2020),
  density proportional to ``sum(shape) / prod(shape)``, capped at dense.

Per-layer ``overrides`` (regex → sparsity) are applied on top of any of
them: overridden layers get their own sparsity and the distribution splits
``s`` over the remaining layers.
"""
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Sequence

import torch

from gap_mm.errors import GaPConfigError
from .selection import compile_regexes
from .topk import num_kept, topk_masks

DISTRIBUTIONS = ('uniform', 'global', 'erk')


def check_sparsity(value: float, what: str = 'sparsity') -> float:
    """Validate a sparsity value, which must lie in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GaPConfigError(f'{what} must be a number in [0, 1), but got '
                             f'{value!r} of type {type(value).__name__}')
    if not 0.0 <= float(value) < 1.0:
        raise GaPConfigError(f'{what} must be in [0, 1), but got {value}')
    return float(value)


def match_overrides(
        names: Sequence[str],
        overrides: Optional[Mapping[str, float]]) -> 'OrderedDict[str, float]':
    """Resolve regex overrides to ``{name: sparsity}``.

    The first regex (in the mapping's order) that :func:`re.search`-matches
    a name wins. A regex that matches no name is an error.
    """
    resolved: Dict[str, float] = OrderedDict()
    for pattern, value in (overrides or {}).items():
        check_sparsity(value, f'override sparsity for {pattern!r}')
        regex, = compile_regexes([pattern], 'overrides')
        hits = [n for n in names if regex.search(n)]
        if not hits:
            raise GaPConfigError(
                f'override regex {pattern!r} matches no prunable parameter; '
                f'the prunable parameters are {list(names)[:8]}'
                f'{" ..." if len(names) > 8 else ""}')
        for name in hits:
            resolved.setdefault(name, float(value))
    return resolved


def uniform_keep(numels: Mapping[str, int],
                 sparsity: float) -> 'OrderedDict[str, int]':
    """Every layer keeps ``n - round(s * n)``."""
    return OrderedDict(
        (name, num_kept(n, sparsity)) for name, n in numels.items())


def erk_keep(shapes: Mapping[str, Sequence[int]],
             sparsity: float,
             scale: float = 1.0) -> 'OrderedDict[str, int]':
    """Erdős–Rényi-kernel allocation (RigL).

    Layer densities are ``eps * scale * sum(shape) / prod(shape)``, with
    ``eps`` chosen so that the total density is ``1 - sparsity``. Layers
    whose density would exceed 1 are made dense and ``eps`` is solved again
    over the rest.

    Args:
        shapes (Mapping[str, Sequence[int]]): Weight shapes by name.
        sparsity (float): Target over these layers.
        scale (float): RigL's ``erk_power_scale`` style factor on the raw
            score (``sum/prod`` is raised to this power). Defaults to 1.0.
    """
    numels = {n: int(torch.Size(s).numel()) for n, s in shapes.items()}
    raw = {n: (sum(s) / numels[n])**scale for n, s in shapes.items()}
    total_keep = sum(numels.values()) * (1.0 - sparsity)
    dense: set = set()
    while True:
        budget = total_keep - sum(numels[n] for n in dense)
        denom = sum(raw[n] * numels[n] for n in numels if n not in dense)
        eps = budget / denom if denom > 0 else 0.0
        newly = {n for n in numels if n not in dense and eps * raw[n] > 1.0}
        if not newly:
            break
        dense |= newly
    keep = OrderedDict()
    for name, n in numels.items():
        density = 1.0 if name in dense else eps * raw[name]
        keep[name] = min(n, max(0, int(round(density * n))))
    return keep


def global_keep(scores: Mapping[str, torch.Tensor],
                sparsity: float) -> 'OrderedDict[str, int]':
    """Keep counts from one magnitude threshold over all layers."""
    names = list(scores)
    total = sum(scores[n].numel() for n in names)
    masks = topk_masks([scores[n] for n in names], num_kept(total, sparsity))
    return OrderedDict(
        (n, int(torch.count_nonzero(m))) for n, m in zip(names, masks))
