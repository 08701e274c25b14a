# Copyright (c) gap_mm contributors. All rights reserved.
"""Optimizer-state surgery at prune and grow events.

Works for every torch optimizer whose per-parameter state tensors have the
parameter's shape (SGD's ``momentum_buffer``, Adam's ``exp_avg`` and
``exp_avg_sq``, ...); scalars such as Adam's ``step`` are left alone.
"""
from typing import Iterator, Mapping, Tuple

import torch
from torch import nn

from gap_mm.errors import GaPConfigError

#: Per-element second moments of Adam-family optimizers (Adam, AdamW, NAdam,
#: RAdam; AMSGrad's running maximum), see :func:`init_regrown_state_`.
SECOND_MOMENT_KEYS = ('exp_avg_sq', 'max_exp_avg_sq')
#: How :func:`init_regrown_state_` starts those moments.
REGROWN_SECOND_MOMENTS = ('mean', 'zero')


def _state_tensors(
    optimizer: torch.optim.Optimizer, params: Mapping[str, nn.Parameter],
    masks: Mapping[str, torch.Tensor]
) -> Iterator[Tuple[str, torch.Tensor, torch.Tensor]]:
    """``(key, state tensor, mask on its device)`` for every per-parameter
    state tensor shaped like its parameter."""
    for name, mask in masks.items():
        state = optimizer.state.get(params[name])
        for key, value in (state or {}).items():
            if isinstance(value, torch.Tensor) and value.shape == mask.shape:
                yield key, value, mask.to(value.device)


@torch.no_grad()
def zero_optimizer_state_(optimizer: torch.optim.Optimizer,
                          params: Mapping[str, nn.Parameter],
                          masks: Mapping[str, torch.Tensor]) -> int:
    """Zero the per-parameter optimizer state where ``masks`` is True.

    Args:
        optimizer (Optimizer): Any torch optimizer.
        params (Mapping[str, Parameter]): The parameters by name.
        masks (Mapping[str, Tensor]): Bool masks, True where to zero.

    Returns:
        int: Number of state tensors touched.
    """
    touched = 0
    for _, value, mask in _state_tensors(optimizer, params, masks):
        value.masked_fill_(mask, 0)
        touched += 1
    return touched


@torch.no_grad()
def init_regrown_state_(optimizer: torch.optim.Optimizer,
                        params: Mapping[str, nn.Parameter],
                        masks: Mapping[str, torch.Tensor],
                        second_moment: str = 'mean') -> int:
    """Set the optimizer state of regrown positions (``masks`` True).

    Momentum and first moments (SGD's ``momentum_buffer``, Adam's
    ``exp_avg``) become 0, like the regrown weights. Adam-style second
    moments (:data:`SECOND_MOMENT_KEYS`) become, with
    ``second_moment='mean'``, the mean over the positions that stayed in the
    tensor; with ``'zero'``, 0.

    Why not 0: Adam's ``step`` is one count per tensor, so a position whose
    moments restart at 0 after ``t >> 1`` steps is bias-corrected as if it
    had ``t`` steps of history: its update is
    ``(1 - beta1^k) / sqrt(1 - beta2^k)`` times a normal one after ``k``
    steps, 3x to 6x for the first hundreds of steps at the usual betas.
    Every regrown weight of a layer then moves at several times the
    learning rate at once, which can blow up training.

    Returns:
        int: Number of state tensors touched.
    """
    if second_moment not in REGROWN_SECOND_MOMENTS:
        raise GaPConfigError(f'second_moment must be one of '
                             f'{REGROWN_SECOND_MOMENTS}, but got '
                             f'{second_moment!r}')
    touched = 0
    for key, value, mask in _state_tensors(optimizer, params, masks):
        fill = 0.0
        if (second_moment == 'mean' and key in SECOND_MOMENT_KEYS
                and not bool(mask.all())):
            fill = value[~mask].mean()
        value.masked_fill_(mask, fill)
        touched += 1
    return touched
