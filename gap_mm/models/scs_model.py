# Copyright (c) gap_mm contributors. All rights reserved.
"""``SCSModel``: a detector with SCS's channel and block gates and its FLOPs
penalty.

MMEngine's Runner builds the optimizer before any hook runs, so the gates'
logits must be parameters of the model when it is built: this wrapper
builds the detector from its config (``architecture``, as OpenMMLab's
compression algorithms wrap one), adds a :class:`~gap_mm.sparsity.gates.
GateSet` and, in ``mode='loss'``, the term ``loss_flops = lambda *
E[FLOPs] / FLOPs`` of :func:`~gap_mm.sparsity.gates.gated_flops`.
:class:`~gap_mm.engine.hooks.SCSHook` drives ``beta``, the sampling,
``lambda`` and the freeze. Prediction is the detector's own, with the gates
at ``1[s > 0]``.
"""
import math
from typing import Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from gap_mm.errors import GaPConfigError
from gap_mm.sparsity.gates import (GateSet, check_seed, gated_flops,
                                   landing_structure)


@MODELS.register_module()
class SCSModel(BaseModel):
    """Structured continuous sparsification around a model.

    Args:
        architecture (dict): The model to gate (a detector config).
        flops_input_shape (Sequence[int]): The input the FLOPs are
            counted for (``mmengine.analysis``): ``(C, H, W)`` of an image
            (detectors; a two-stage one's RoI head on its RPN's test-time
            proposals), or ``(N, C)`` of a point cloud (PointNet++ part
            segmentation).
        gate_channels (bool): Gate the channels of the channel groups.
            Defaults to True.
        gate_blocks (bool): Gate the residual blocks without a downsample.
            Defaults to True.
        exclude (Sequence[str]): Name prefixes of layers and blocks left
            ungated. Defaults to ().
        only (Sequence[str]): Name prefixes of the only layers and blocks
            to gate (e.g. ``['backbone.']``); a prefix under which nothing
            can be gated is an error that says why. Defaults to () (all).
        init_logit (float): Initial gate logit, not 0: > 0 starts with
            every gate on (pruning mode), < 0 every gate off. Defaults to
            1.0.
        seed_width (float, optional): Growing mode from a seed network: a
            fraction in (0, 1) of every gated layer's channels that starts
            on (the first ``ceil(seed_width * channels)``, logit
            ``|init_logit|``), the others starting off (``seed_off_logit``);
            the blocks start on. A dense warm-up (``SCSHook(begin=...)``)
            then trains the seed network, and with
            ``SCSHook(lambda_controller='signed')`` the FLOPs term grows
            channels back while the structure computes less than the
            target. Defaults to None (every gate at ``init_logit``).
        seed_off_logit (float, optional): With ``seed_width``, the logit the
            channels outside the seed start at, < 0: near 0 they can grow
            while ``beta`` is still low, and the seed's channels stay on at
            ``|init_logit|``. Defaults to ``-|init_logit|``.
        lambda_init (float): The FLOPs weight to start from, >= 0
            (:class:`~gap_mm.engine.hooks.SCSHook` steers it towards its
            FLOPs target). Defaults to 0.01.
        init_cfg (dict, optional): Passed on to ``BaseModel``.
    """

    def __init__(self,
                 architecture: dict,
                 flops_input_shape: Sequence[int] = (3, 224, 224),
                 gate_channels: bool = True,
                 gate_blocks: bool = True,
                 exclude: Sequence[str] = (),
                 only: Sequence[str] = (),
                 init_logit: float = 1.0,
                 seed_width: Optional[float] = None,
                 seed_off_logit: Optional[float] = None,
                 lambda_init: float = 0.01,
                 init_cfg: Optional[dict] = None) -> None:
        from gap_mm.analysis.flops import check_input_shape, module_flops
        if not isinstance(architecture, dict) or 'type' not in architecture:
            raise GaPConfigError(
                f'SCSModel needs architecture=dict(type=..., ...), the '
                f'model to gate; got {architecture!r}')
        if isinstance(lambda_init,
                      bool) or not isinstance(lambda_init,
                                              (int, float)) or lambda_init < 0:
            raise GaPConfigError(
                f'SCSModel lambda_init must be a number >= 0, got '
                f'{lambda_init!r}')
        if isinstance(init_logit, bool) or not isinstance(
                init_logit, (int, float)) or init_logit == 0 or \
                not math.isfinite(init_logit):
            raise GaPConfigError(
                f'SCSModel init_logit must be a finite number != 0 (> 0: '
                f'every gate starts on, pruning mode; < 0: off), got '
                f'{init_logit!r}; at 0 every gate would be drawn at p = 1/2 '
                f'yet off in evaluation (1[s > 0])')
        shape = check_input_shape(flops_input_shape,
                                  'SCSModel flops_input_shape')
        # before the detector is built: fail fast, in this model's names
        check_seed(seed_width, seed_off_logit, init_logit,
                   ('seed_width', 'seed_off_logit', 'init_logit'), 'SCSModel ')
        arch = MODELS.build(architecture)
        super().__init__(init_cfg=init_cfg)
        self.architecture = arch
        self.data_preprocessor = arch.data_preprocessor
        self.gates = GateSet.from_model(
            arch,
            channels=gate_channels,
            blocks=gate_blocks,
            exclude=tuple(exclude),
            init=init_logit,
            only=tuple(only),
            seed_width=seed_width,
            seed_off=seed_off_logit)
        #: Full FLOPs by module name (mmengine.analysis), ungated.
        self.flops = module_flops(arch, shape)
        self.gates.attach(arch)
        self.flops_input_shape: Tuple[int, ...] = shape
        #: Growing mode: the seed's share of every gated layer, or None.
        self.seed_width: Optional[float] = seed_width
        self.register_buffer('scs_lambda', torch.tensor(float(lambda_init)))

    def flops_ratio(self,
                    hard: bool = False,
                    sampled: bool = False) -> torch.Tensor:
        """FLOPs under the gates over the full FLOPs (expected with
        ``hard=False``, of the on/off structure with ``hard=True``, of this
        iteration's draws with ``sampled=True``)."""
        return gated_flops(self.architecture, self.gates, self.flops, hard,
                           sampled)

    def land_(self, target: float) -> Optional[float]:
        """Make the hard structure the largest one within ``target`` of the
        full FLOPs among those that keep the gates of highest logit (and
        each layer's top channel:
        :func:`~gap_mm.sparsity.gates.landing_structure`), through the
        logits (:meth:`~gap_mm.sparsity.gates.GateSet.impose_`), so that
        ``1[s > 0]`` in evaluation and the exported model are it.

        Returns:
            float | None: The threshold the logits were shifted by, or None
            when the structure already was that one (the logits are then
            left as they are, so a second call changes nothing: a resumed
            run lands the same).
        """
        threshold, structure = landing_structure(self.architecture,
                                                 self.gates, self.flops,
                                                 target)
        before = self.gates.hard_state()
        if all(torch.equal(before[n], on) for n, on in structure.items()):
            return None
        self.gates.impose_(structure, threshold)
        return threshold

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        out = self.architecture(inputs, data_samples, mode)
        if mode == 'loss':
            # before gating begins and after the freeze the term is 0
            # (kept, so the logs show it)
            idle = self.gates.frozen or self.gates.warmup
            out['loss_flops'] = self.scs_lambda.new_zeros(
                ()) if idle else (self.scs_lambda *
                                  self.flops_ratio()).to(self.scs_lambda.dtype)
        return out
