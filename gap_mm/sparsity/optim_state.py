# Copyright (c) gap_mm contributors. All rights reserved.
"""Optimizer-state surgery at prune and grow events.

Works for every torch optimizer whose per-parameter state tensors have the
parameter's shape (SGD's ``momentum_buffer``, Adam's ``exp_avg`` and
``exp_avg_sq``, ...); scalars such as Adam's ``step`` are left alone.

The positions to change are given per parameter as a bool mask shaped like
it, or as an int64 tensor of flat positions (row-major), cheaper for the few
positions a drop-and-grow update changes.
"""
from typing import Iterator, Mapping, Tuple

import torch
from torch import nn

from gap_mm.errors import GaPConfigError
from .masks import keep_word, zero_pruned_

#: Per-element second moments of Adam-family optimizers (Adam, AdamW, NAdam,
#: RAdam; AMSGrad's running maximum), see :func:`init_regrown_state_`.
SECOND_MOMENT_KEYS = ('exp_avg_sq', 'max_exp_avg_sq')
#: How :func:`init_regrown_state_` starts those moments.
REGROWN_SECOND_MOMENTS = ('mean', 'zero')


def _check_second_moment(second_moment: str) -> None:
    if second_moment not in REGROWN_SECOND_MOMENTS:
        raise GaPConfigError(f'second_moment must be one of '
                             f'{REGROWN_SECOND_MOMENTS}, but got '
                             f'{second_moment!r}')


class _Where:
    """The positions of one parameter's state to change: a bool mask, or
    int64 flat positions; each form made once and moved once per
    device."""

    def __init__(self, where: torch.Tensor, shape: torch.Size) -> None:
        self.positions = where if where.dtype == torch.int64 else None
        self.shape = shape if self.positions is not None else where.shape
        self._mask = None if self.positions is not None else where.bool()
        self._word = None

    def mask(self, device) -> torch.Tensor:
        if self._mask is None:
            mask = torch.zeros(
                self.shape, dtype=torch.bool, device=self.positions.device)
            mask.view(-1).index_fill_(0, self.positions, True)
            self._mask = mask
        self._mask = self._mask.to(device)
        return self._mask

    def zero_(self, value: torch.Tensor) -> None:
        """Zero ``value`` at these positions."""
        if self.positions is not None and value.is_contiguous():
            value.view(-1).index_fill_(0, self.positions.to(value.device), 0)
            return
        if self._word is None or self._word.device != value.device:
            self._word = keep_word(self.mask(value.device))
        zero_pruned_(value, self._word)

    def all(self) -> bool:
        if self.positions is not None:
            return self.positions.numel() == self.shape.numel()
        return bool(self._mask.all())


def _state_tensors(
        optimizer: torch.optim.Optimizer, params: Mapping[str, nn.Parameter],
        masks: Mapping[str,
                       torch.Tensor]) -> Iterator[Tuple[str, torch.Tensor,
                                                        _Where]]:
    """``(key, state tensor, positions)`` for every per-parameter state
    tensor shaped like the positions' parameter."""
    for name, where in masks.items():
        state = optimizer.state.get(params[name])
        where = _Where(where, params[name].shape)
        for key, value in (state or {}).items():
            if isinstance(value, torch.Tensor) and value.shape == where.shape:
                yield key, value, where


def _regrow_(key: str, value: torch.Tensor, where: _Where,
             second_moment: str) -> None:
    """Regrown state: 0, or the mean of the other positions for a second
    moment with ``second_moment='mean'``."""
    if (second_moment == 'mean' and key in SECOND_MOMENT_KEYS
            and not where.all()):
        mask = where.mask(value.device)
        value.masked_fill_(mask, value[~mask].mean())
    else:
        where.zero_(value)


@torch.no_grad()
def zero_optimizer_state_(optimizer: torch.optim.Optimizer,
                          params: Mapping[str, nn.Parameter],
                          masks: Mapping[str, torch.Tensor]) -> int:
    """Zero the per-parameter optimizer state at the given positions.

    Args:
        optimizer (Optimizer): Any torch optimizer.
        params (Mapping[str, Parameter]): The parameters by name.
        masks (Mapping[str, Tensor]): Bool masks, True where to zero, or
            int64 flat positions.

    Returns:
        int: Number of state tensors touched.
    """
    touched = 0
    for _, value, where in _state_tensors(optimizer, params, masks):
        where.zero_(value)
        touched += 1
    return touched


@torch.no_grad()
def init_regrown_state_(optimizer: torch.optim.Optimizer,
                        params: Mapping[str, nn.Parameter],
                        masks: Mapping[str, torch.Tensor],
                        second_moment: str = 'mean') -> int:
    """Set the optimizer state of regrown positions (``masks`` True, or
    int64 flat positions).

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
    _check_second_moment(second_moment)
    touched = 0
    for key, value, where in _state_tensors(optimizer, params, masks):
        _regrow_(key, value, where, second_moment)
        touched += 1
    return touched


@torch.no_grad()
def reset_optimizer_state_(optimizer: torch.optim.Optimizer,
                           params: Mapping[str, nn.Parameter],
                           pruned: Mapping[str, torch.Tensor],
                           grown: Mapping[str, torch.Tensor],
                           second_moment: str = 'mean') -> int:
    """:func:`zero_optimizer_state_` where ``pruned``, then
    :func:`init_regrown_state_` where ``grown``, with the same result; a
    state tensor that both set to 0 through bool masks is passed over
    once.

    Returns:
        int: Number of state tensors touched (counted once each).
    """
    _check_second_moment(second_moment)
    both = [
        n for n in pruned if n in grown and pruned[n].dtype == torch.bool
        and grown[n].dtype == torch.bool and pruned[n].shape == grown[n].shape
    ]
    touched = 0
    for name in both:
        state = optimizer.state.get(params[name])
        lost, found = pruned[name], grown[name]
        either = None
        for key, value in (state or {}).items():
            if not (isinstance(value, torch.Tensor)
                    and value.shape == lost.shape):
                continue
            if (second_moment == 'mean' and key in SECOND_MOMENT_KEYS
                    and not bool(found.all())):
                _Where(lost.to(value.device), lost.shape).zero_(value)
                _regrow_(key, value, _Where(found.to(value.device),
                                            found.shape), second_moment)
            else:
                if either is None:
                    either = _Where(lost | found.to(lost.device), lost.shape)
                either.zero_(value)
            touched += 1
    touched += zero_optimizer_state_(
        optimizer, params, {n: m
                            for n, m in pruned.items() if n not in both})
    touched += init_regrown_state_(
        optimizer, params, {n: m
                            for n, m in grown.items() if n not in both},
        second_moment)
    return touched
