# Copyright (c) gap_mm contributors. All rights reserved.
"""FLOPs accounting under SCS's gates: what a model computes with some of
its channels and blocks switched off."""
from collections import OrderedDict
from typing import Dict, Mapping, Optional

import torch
from torch import nn

from gap_mm.errors import GaPConfigError
from .gate_set import GateSet


def gated_flops(model: nn.Module,
                gates: GateSet,
                flops: Mapping[str, int],
                hard: bool = False,
                sampled: bool = False,
                structure: Optional[Mapping[str, torch.Tensor]] = None
                ) -> torch.Tensor:
    """The FLOPs of ``model`` under its gates, over its full FLOPs.

    A conv / linear layer computes ``F * a_out * a_in * a_block`` of its
    full FLOPs ``F`` (from :func:`gap_mm.analysis.flops.module_flops`, i.e.
    ``mmengine.analysis``): ``a_out`` the fraction of its output channels
    that are on, ``a_in`` of its input channels (when it reads a gated
    group), ``a_block`` its block's gate; a gated producer's norm layer
    computes ``a_out`` of its FLOPs, and every other layer inside a gated
    block ``a_block``, so the hard count equals the slimmed model's. With
    ``hard=False`` the fractions are the gates' probabilities
    ``sigmoid(beta * s)`` (the expectation under independent gates,
    differentiable in ``s``: the penalty); with ``hard=True`` the
    structure ``1[s > 0]``, or ``structure`` (gate name -> bool) where it
    is given; with ``sampled=True`` the draws ``q`` of the
    current iteration (the channels a training step computes: the others
    are exactly 0, and a restructured network would skip them). Everything
    else (ungated layers and norms, the rest) counts in full.

    Returns:
        Tensor: A scalar in (0, 1].
    """
    total = float(flops.get('', 0))
    if total <= 0:
        raise GaPConfigError('the FLOPs count of the whole model is 0; '
                             'count it with module_flops on a real input')
    if sampled and hard:
        raise ValueError('gated_flops: hard or sampled, not both')
    if structure is not None and not hard:
        raise ValueError('gated_flops: a structure goes with hard=True')
    frac = OrderedDict()
    for name, gate in gates.gates().items():
        # float64: the FLOPs are counts of up to ~1e11
        if sampled:
            frac[name] = gate.sample.detach().double().mean()
        elif hard:
            on = gate.hard() if structure is None else structure[name]
            frac[name] = on.double().mean()
        else:
            frac[name] = gate.probs(gates.beta).double().mean()
    device = next(iter(gates.parameters())).device
    one = torch.ones((), dtype=torch.float64, device=device)
    factor: Dict[str, torch.Tensor] = {}

    def scale(layer: str, value: torch.Tensor) -> None:
        factor[layer] = factor.get(layer, one) * value

    for gate, layers in gates.scaled_layers(model).items():
        for layer in layers:
            scale(layer, frac[gate])
    gated = sum(float(flops.get(n, 0)) for n in factor)
    kept = sum(float(flops.get(n, 0)) * f for n, f in factor.items())
    return (total - gated + kept) / total
