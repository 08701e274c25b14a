# Copyright (c) gap_mm contributors. All rights reserved.
"""The landing search: the largest gate structure within a FLOPs budget,
and the smallest budget any structure can reach."""
import math
from typing import Dict, Mapping, Tuple

import torch
from torch import nn

from gap_mm.errors import GaPConfigError
from .flops import gated_flops
from .gate_set import GateSet


def landing_structure(
        model: nn.Module, gates: GateSet, flops: Mapping[str, int],
        target: float) -> Tuple[float, Dict[str, torch.Tensor]]:
    """The largest structure within a FLOPs budget that keeps the gates of
    highest logit: ``1[s > t]`` for the smallest threshold ``t`` whose
    FLOPs (counted as :func:`gated_flops` counts them) are at most
    ``target`` of the full model's, where a layer with a channel on keeps
    its top channel whatever ``t`` (a layer with none would cut the
    network: the logits of different layers have different scales, and a
    threshold above all of one layer's logits switched off a whole
    PointNet++ feature-propagation layer). Gates of equal logit are kept
    or dropped together; a block gate is dropped like any other (the
    block is skipped).

    The FLOPs fall as ``t`` rises, so ``t`` is found by bisection over
    the logits' values (a dozen counts for thousands of gates); it is one
    of them, or 1 below the smallest when the whole model fits.

    Returns:
        tuple: ``t`` and the structure (gate name -> bool tensor), for
        :meth:`GateSet.impose_`.

    Raises:
        GaPConfigError: If not even the smallest structure (every gate
            off but each layer's top channel) fits ``target``.
    """
    named = gates.gates()
    logits = {n: g.logits.detach() for n, g in named.items()}
    protect = {}
    for name, s in logits.items():
        keep = torch.zeros_like(s, dtype=torch.bool)
        if name in gates.channel_sites and bool((s > 0).any()):
            keep[int(s.argmax())] = True
        protect[name] = keep
    values = torch.cat([s.flatten() for s in logits.values()
                        ]).unique().tolist()  # sorted; each a float32

    def structure(t: float) -> Dict[str, torch.Tensor]:
        return {n: (s > t) | protect[n] for n, s in logits.items()}

    def ratio(t: float) -> float:
        return float(
            gated_flops(model, gates, flops, hard=True,
                        structure=structure(t)))

    below = values[0] - max(1.0, abs(values[0]))  # every gate on
    if ratio(below) <= target:
        return below, structure(below)
    floor = ratio(values[-1])
    if floor > target:
        raise GaPConfigError(_floor_message(target, floor))
    lo, hi = 0, len(values) - 1  # values[hi] fits
    while lo < hi:
        mid = (lo + hi) // 2
        if ratio(values[mid]) <= target:
            hi = mid
        else:
            lo = mid + 1
    return values[lo], structure(values[lo])


def landing_floor(model: nn.Module, gates: GateSet,
                  flops: Mapping[str, int]) -> float:
    """The FLOPs (over the full model's) of the smallest structure a
    landing can reach from any logits: every block off and one channel
    on in every gated layer (:func:`landing_structure` keeps a layer's
    top channel). Known when the model is built, so a target below it can
    be refused before training."""
    structure = {}
    for name, gate in gates.gates().items():
        on = torch.zeros_like(gate.logits, dtype=torch.bool)
        if name in gates.channel_sites:
            on[0] = True
        structure[name] = on
    return float(
        gated_flops(model, gates, flops, hard=True, structure=structure))


def check_landing_target(model: nn.Module, gates: GateSet,
                         flops: Mapping[str, int], target: float) -> None:
    """Refuse a landing target below :func:`landing_floor`.

    Raises:
        GaPConfigError: Naming the target and the floor.
    """
    floor = landing_floor(model, gates, flops)
    if floor > target:
        raise GaPConfigError(_floor_message(target, floor))


def _floor_message(target: float, floor: float) -> str:
    # rounded up, so that the target it names does fit
    shown = math.ceil(floor * 1e4) / 1e4
    return (f'no structure of the gates computes at most {target} of the '
            f'full FLOPs: with every gate off but one channel per layer '
            f'the model computes {floor:.6f}; give a flops_target >= '
            f'{shown:.4f}, or gate more layers')
