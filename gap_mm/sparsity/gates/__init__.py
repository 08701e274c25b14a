# Copyright (c) gap_mm contributors. All rights reserved.
"""Channel and block gates of structured continuous sparsification (SCS,
Yuan, Savarese and Maire, ICLR 2021), and the expected FLOPs they leave.

No code of the paper was published; this is a reconstruction from its
abstract and the continuous sparsification it extends (Savarese et al.,
NeurIPS 2020). Every gated channel and every skippable residual block has a
trainable logit ``s``; with the temperature ``beta``:

* in training, ``g = q * sigmoid(beta * s)`` with ``q ~ Bernoulli(sigmoid(
  beta * s))``, drawn once per iteration from a generator seeded by the
  step (so every rank draws the same ``q``, and a resumed run the same as
  the straight one);
* in evaluation, and once the structure is frozen, ``g = 1[s > 0]``.

Where gates go (pure torch, through forward hooks, so the model's own code
is unchanged):

* a channel gate on each producer of :mod:`gap_mm.sparsity.channels`,
  multiplying its channels after the norm layer (after the producer where
  there is none) and before the activation: the channels a gate switches off
  are exactly 0 after the ReLU, and :mod:`gap_mm.export.slim` removes them;
* a block gate on each residual block without a downsample (the only ones
  that can be skipped: input and output shapes agree), multiplying the
  residual branch after its last norm layer, before the sum: off, the block
  computes ``relu(x) = x`` (its input is a ReLU output).

Channels tied by residual sums (a block's last conv and its downsample) and
by FPN levels (lateral and output convs, heads shared across levels) are
never gated, for the reasons of :mod:`gap_mm.sparsity.coupling`: removing
one of them would need the same channel removed in every tensor of the sum.

The package holds three concerns: :mod:`.gate_set` (the gate modules),
:mod:`.flops` (FLOPs accounting under the gates) and :mod:`.landing` (the
landing search); every name is importable from here.
"""
from .flops import gated_flops
from .gate_set import Gate, GateSet, check_seed
from .landing import check_landing_target, landing_floor, landing_structure

__all__ = [
    'Gate', 'GateSet', 'check_landing_target', 'check_seed', 'gated_flops',
    'landing_floor', 'landing_structure'
]
