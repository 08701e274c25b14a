# Copyright (c) gap_mm contributors. All rights reserved.
"""The masks of a sparse network and the operations GaP performs on them."""
import re
import warnings
from collections import OrderedDict
from typing import (Dict, Iterable, List, Mapping, Optional, Sequence, Set,
                    Tuple, Union)

import torch
from torch import nn

from gap_mm.errors import GaPConfigError
from .distribution import (DISTRIBUTIONS, check_sparsity, erk_keep,
                           match_overrides, uniform_keep)
from .packing import pack_mask, unpack_mask
from .partition import PartitionSpec, build_partitions
from .topk import nm_mask, topk_masks

_NM_RE = re.compile(r'^\s*(\d+)\s*:\s*(\d+)\s*$')
#: Per-element second moments of Adam-family optimizers (Adam, AdamW, NAdam,
#: RAdam; AMSGrad's running maximum), see
#: :meth:`MagnitudeSparsifier.init_regrown_state_`.
SECOND_MOMENT_KEYS = ('exp_avg_sq', 'max_exp_avg_sq')
#: How :meth:`MagnitudeSparsifier.init_regrown_state_` starts those moments.
REGROWN_SECOND_MOMENTS = ('mean', 'zero')
# Integer dtype of the same width, to AND a float tensor with a keep word.
_INT_OF_WIDTH = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def keep_word(pruned: torch.Tensor) -> torch.Tensor:
    """int8 keep word from a bool pruned-mask: -1 where kept, 0 where
    pruned."""
    return (~pruned).to(torch.int8).neg_()


@torch.no_grad()
def zero_pruned_(tensor: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
    """Zero ``tensor`` in place where ``word`` is 0, keep it bit for bit
    where ``word`` is -1.

    A floating tensor is ANDed through its integer view (sign-extending the
    int8 word to the element width); other dtypes fall back to
    ``masked_fill_``.
    """
    int_dtype = _INT_OF_WIDTH.get(tensor.element_size())
    if tensor.is_floating_point() and int_dtype is not None:
        tensor.view(int_dtype).bitwise_and_(word)
    else:
        tensor.masked_fill_(word == 0, 0)
    return tensor


def parse_pattern(
        pattern: Union[str, Tuple[int, int],
                       None]) -> Optional[Tuple[int, int]]:
    """``'unstructured'`` → None; ``'2:4'`` or ``(2, 4)`` → ``(2, 4)``."""
    if pattern in (None, 'unstructured'):
        return None
    if isinstance(pattern, str):
        match = _NM_RE.match(pattern)
        if not match:
            raise GaPConfigError(
                f"pattern must be 'unstructured' or 'N:M' such "
                f"as '2:4', but got {pattern!r}")
        n, m = int(match.group(1)), int(match.group(2))
    elif (isinstance(pattern, (tuple, list)) and len(pattern) == 2
          and all(isinstance(v, int) for v in pattern)):
        n, m = pattern
    else:
        raise GaPConfigError(
            f"pattern must be 'unstructured' or 'N:M' such as "
            f"'2:4', but got {pattern!r}")
    if not 0 < n < m:
        raise GaPConfigError(
            f'N:M pattern needs 0 < N < M, but got N={n}, M={m} '
            f'(from {pattern!r})')
    return n, m


class MagnitudeSparsifier:
    """Boolean weight masks chosen by magnitude, grouped in partitions.

    This is the "what" of GaP and knows nothing about training loops: the
    :class:`~gap_mm.engine.GaPHook` decides *when* to call :meth:`prune` and
    :meth:`grow`, and :class:`~gap_mm.engine.GaPOptimWrapper` calls
    :meth:`mask_grads_` and :meth:`apply_masks_` around every optimizer step.

    A layer is either sparse (it has a mask; masked weights are exactly 0) or
    dense (no mask, nothing to do). A mask is stored as one int8 "keep word"
    per weight, -1 (all bits set) where the weight is kept and 0 where it is
    pruned, and applied as a bitwise AND on the integer view of the weight
    or gradient (:func:`zero_pruned_`): 1 byte per weight, exact, and on the
    CPU faster than ``masked_fill_`` or a multiply by a bool mask (see
    ``benchmarks/README.md``). A pruned weight becomes +0.0,
    never -0.0. :meth:`keep_mask` and :meth:`pruned_mask` give bool views.

    To prune by another importance than ``|w|``, subclass and override
    :meth:`score`.

    Args:
        params (Mapping[str, nn.Parameter]): Prunable weights by name, in
            model order (see :func:`~gap_mm.sparsity.select_prunable`).
        sparsity (float): Target sparsity ``s`` in ``[0, 1)``. Ignored for
            an N:M pattern, whose sparsity is ``1 - N/M``. Defaults to 0.8.
        distribution (str): ``'uniform'``, ``'global'`` or ``'erk'``.
            Defaults to ``'uniform'``.
        pattern (str | tuple): ``'unstructured'`` or ``'N:M'`` such as
            ``'2:4'`` (N kept in every M consecutive input weights).
            Defaults to ``'unstructured'``.
        overrides (Mapping[str, float], optional): Regex → sparsity for
            particular layers, on top of the distribution.
        partitions (int | list): K for contiguous automatic partitions, or a
            list of regex groups. Defaults to 1.
        erk_scale (float): Power on the ERK score. Defaults to 1.0.
    """

    def __init__(self,
                 params: Mapping[str, nn.Parameter],
                 sparsity: float = 0.8,
                 distribution: str = 'uniform',
                 pattern: Union[str, Tuple[int, int]] = 'unstructured',
                 overrides: Optional[Mapping[str, float]] = None,
                 partitions: PartitionSpec = 1,
                 erk_scale: float = 1.0) -> None:
        if not params:
            raise GaPConfigError('MagnitudeSparsifier needs at least one '
                                 'prunable parameter')
        self.params: Dict[str, nn.Parameter] = OrderedDict(params)
        self.names: List[str] = list(self.params)
        self.nm = parse_pattern(pattern)
        self.sparsity = check_sparsity(sparsity)
        if distribution not in DISTRIBUTIONS:
            raise GaPConfigError(
                f'distribution must be one of {DISTRIBUTIONS}, '
                f'but got {distribution!r}')
        self.distribution = distribution
        if self.nm is not None and overrides:
            raise GaPConfigError(
                'per-layer overrides do not apply to an N:M '
                f'pattern ({pattern!r}); exclude those layers '
                'instead')
        self.overrides = match_overrides(self.names, overrides)
        numels = OrderedDict((n, p.numel()) for n, p in self.params.items())
        self.partitions: List[List[str]] = build_partitions(numels, partitions)
        self.partition_of: Dict[str, int] = {
            name: k
            for k, group in enumerate(self.partitions)
            for name in group
        }
        self.erk_scale = erk_scale
        # Target kept weights per layer; 'global' fills them at first prune.
        self.num_keep: Dict[str, int] = self._initial_keep(numels)
        # Keep words of the sparse layers, in model order (see above).
        self._words: Dict[str, torch.Tensor] = OrderedDict()

    # ------------------------------------------------------------- targets
    def _initial_keep(self, numels: Mapping[str, int]) -> Dict[str, int]:
        if self.nm is not None:
            n, m = self.nm
            for name, param in self.params.items():
                if param.dim() < 2 or param.shape[1] % m:
                    raise GaPConfigError(
                        f'N:M pattern {n}:{m} cannot prune {name} of shape '
                        f'{tuple(param.shape)}: its input dimension must '
                        f'divide by {m}. Exclude it with `exclude`.')
            return OrderedDict((k, v * n // m) for k, v in numels.items())
        rest = OrderedDict(
            (k, v) for k, v in numels.items() if k not in self.overrides)
        keep: Dict[str, int] = OrderedDict()
        if self.distribution == 'uniform':
            keep.update(uniform_keep(rest, self.sparsity))
        elif self.distribution == 'erk':
            keep.update(
                erk_keep({k: self.params[k].shape
                          for k in rest}, self.sparsity, self.erk_scale))
        for name, value in self.overrides.items():
            keep.update(uniform_keep({name: numels[name]}, value))
        return OrderedDict((k, keep[k]) for k in self.names if k in keep)

    # ---------------------------------------------------------------- state
    @property
    def num_partitions(self) -> int:
        return len(self.partitions)

    @property
    def dense_partitions(self) -> Set[int]:
        """Partitions none of whose layers holds a mask."""
        return {
            k
            for k, group in enumerate(self.partitions)
            if not any(n in self._words for n in group)
        }

    def is_sparse(self, name: str) -> bool:
        return name in self._words

    def keep_mask(self, name: str) -> Optional[torch.Tensor]:
        """Bool mask, True where the weight is kept; None for a dense
        layer."""
        word = self._words.get(name)
        return None if word is None else word != 0

    def pruned_mask(self, name: str) -> Optional[torch.Tensor]:
        """Bool mask, True where the weight is pruned; None for a dense
        layer."""
        word = self._words.get(name)
        return None if word is None else word == 0

    def score(self, name: str, param: torch.Tensor) -> torch.Tensor:
        """Importance of each weight; larger survives. Defaults to
        ``|w|``."""
        return param.detach().abs()

    # ------------------------------------------------------------- events
    def _check_partitions(self, partitions: Iterable[int]) -> List[int]:
        ids = sorted(set(int(k) for k in partitions))
        bad = [k for k in ids if not 0 <= k < self.num_partitions]
        if bad:
            raise GaPConfigError(
                f'partition ids {bad} out of range; there are '
                f'{self.num_partitions} partitions')
        return ids

    @torch.no_grad()
    def prune(self, partitions: Iterable[int]) -> Dict[str, torch.Tensor]:
        """Prune the layers of ``partitions`` to their targets by score.

        A layer that is already sparse is re-selected from its current
        weights (its masked weights are 0, so they stay pruned unless the
        target changed). The weights are zeroed at once.

        Returns:
            dict[str, Tensor]: The new pruned masks (True = pruned) of the
            layers touched, for zeroing optimizer state.
        """
        names = [
            n for k in self._check_partitions(partitions)
            for n in self.partitions[k]
        ]
        if not names:
            return {}
        new: Dict[str, torch.Tensor] = OrderedDict()
        for name, pruned in zip(names, self._select_pruned(names)):
            word = keep_word(pruned)
            self._words[name] = word
            zero_pruned_(self.params[name], word)
            new[name] = pruned
        # Keep the dict in model order whatever order events come in.
        self._words = OrderedDict(
            (n, self._words[n]) for n in self.names if n in self._words)
        return new

    def _select_pruned(self, names: Sequence[str]) -> List[torch.Tensor]:
        """Pruned masks (True = pruned) of ``names`` by score."""
        if self.nm is not None:
            n, m = self.nm
            return [
                ~nm_mask(self.score(name, self.params[name]), n, m)
                for name in names
            ]
        pooled = [n for n in names if n not in self.overrides]
        if self.distribution == 'global' and pooled:
            scores = [self.score(n, self.params[n]) for n in pooled]
            if all(n in self.num_keep for n in pooled):
                budget = sum(self.num_keep[n] for n in pooled)
            else:  # first prune: one threshold over all pooled layers
                if set(pooled) != set(self.names) - set(self.overrides):
                    raise RuntimeError(
                        "the 'global' distribution must prune all layers "
                        'once before pruning single partitions')
                total = sum(s.numel() for s in scores)
                budget = total - int(round(self.sparsity * total))
            masks = topk_masks(scores, budget, pruned=True)
            chosen = dict(zip(pooled, masks))
            for name, mask in chosen.items():
                self.num_keep[name] = mask.numel() - int(
                    torch.count_nonzero(mask))
            emptied = [n for n in pooled if self.num_keep[n] == 0]
            if emptied:
                warnings.warn(
                    f'global magnitude pruning removed every weight of '
                    f'{emptied}; consider exclude=[...] or overrides for '
                    f'them, or the uniform/erk distribution')
        else:
            chosen = {}
        result = []
        for name in names:
            if name in chosen:
                result.append(chosen[name])
            else:
                result.append(
                    topk_masks([self.score(name, self.params[name])],
                               self.num_keep[name],
                               pruned=True)[0])
        return result

    @torch.no_grad()
    def grow(self, partitions: Iterable[int]) -> Dict[str, torch.Tensor]:
        """Make the layers of ``partitions`` dense.

        The regrown weights are 0 already (they were masked), so they start
        training from exactly 0.

        Returns:
            dict[str, Tensor]: The dropped pruned masks, i.e. the regrown
            positions, for zeroing optimizer state.
        """
        grown: Dict[str, torch.Tensor] = OrderedDict()
        for k in self._check_partitions(partitions):
            for name in self.partitions[k]:
                word = self._words.pop(name, None)
                if word is not None:
                    grown[name] = word == 0
        return grown

    # ------------------------------------------------------- every step
    @torch.no_grad()
    def apply_masks_(self) -> None:
        """Zero the masked weights (after an optimizer step)."""
        for name, word in self._words.items():
            zero_pruned_(self.params[name], word)

    @torch.no_grad()
    def mask_grads_(self) -> None:
        """Zero the gradients at masked positions (before an optimizer
        step), so that no momentum or Adam moment builds up there."""
        for name, word in self._words.items():
            grad = self.params[name].grad
            if grad is not None:
                zero_pruned_(grad, word)

    def _state_tensors(self, optimizer: torch.optim.Optimizer,
                       masks: Mapping[str, torch.Tensor]):
        """``(key, state tensor, mask on its device)`` for every
        per-parameter state tensor shaped like its parameter."""
        for name, mask in masks.items():
            state = optimizer.state.get(self.params[name])
            for key, value in (state or {}).items():
                if (isinstance(value, torch.Tensor)
                        and value.shape == mask.shape):
                    yield key, value, mask.to(value.device)

    @torch.no_grad()
    def zero_optimizer_state_(self, optimizer: torch.optim.Optimizer,
                              masks: Mapping[str, torch.Tensor]) -> int:
        """Zero the per-parameter optimizer state where ``masks`` is True.

        Works for every optimizer whose state tensors have the parameter's
        shape (SGD's ``momentum_buffer``, Adam's ``exp_avg`` and
        ``exp_avg_sq``, ...). Scalars such as Adam's ``step`` are untouched.

        Returns:
            int: Number of state tensors touched.
        """
        touched = 0
        for _, value, mask in self._state_tensors(optimizer, masks):
            value.masked_fill_(mask, 0)
            touched += 1
        return touched

    @torch.no_grad()
    def init_regrown_state_(self,
                            optimizer: torch.optim.Optimizer,
                            masks: Mapping[str, torch.Tensor],
                            second_moment: str = 'mean') -> int:
        """Set the optimizer state of regrown positions (``masks`` True).

        Momentum and first moments (SGD's ``momentum_buffer``, Adam's
        ``exp_avg``) become 0, like the regrown weights. Adam-style second
        moments (:data:`SECOND_MOMENT_KEYS`) become, with
        ``second_moment='mean'``, the mean over the positions that stayed
        in the tensor; with ``'zero'``, 0.

        Why not 0: Adam's ``step`` is one count per tensor, so a position
        whose moments restart at 0 after ``t >> 1`` steps is bias-corrected
        as if it had ``t`` steps of history: its update is
        ``(1 - beta1^k) / sqrt(1 - beta2^k)`` times a normal one after
        ``k`` steps, 3x to 6x for the first hundreds of steps at the usual
        betas. Every regrown weight of a partition then moves at several
        times the learning rate at once, which can blow up training.

        Returns:
            int: Number of state tensors touched.
        """
        if second_moment not in REGROWN_SECOND_MOMENTS:
            raise GaPConfigError(f'second_moment must be one of '
                                 f'{REGROWN_SECOND_MOMENTS}, but got '
                                 f'{second_moment!r}')
        touched = 0
        for key, value, mask in self._state_tensors(optimizer, masks):
            fill = 0.0
            if (second_moment == 'mean' and key in SECOND_MOMENT_KEYS
                    and not bool(mask.all())):
                fill = value[~mask].mean()
            value.masked_fill_(mask, fill)
            touched += 1
        return touched

    # ------------------------------------------------------------ reports
    def layer_stats(self) -> List[Dict[str, object]]:
        """Per-layer rows: name, shape, numel, kept, sparsity, partition."""
        rows = []
        for name in self.names:
            param = self.params[name]
            word = self._words.get(name)
            n_pruned = 0 if word is None else word.numel() - int(
                torch.count_nonzero(word))
            rows.append(
                dict(
                    name=name,
                    shape=tuple(param.shape),
                    numel=param.numel(),
                    kept=param.numel() - n_pruned,
                    sparsity=n_pruned / max(1, param.numel()),
                    partition=self.partition_of[name],
                    dense=word is None))
        return rows

    @staticmethod
    def summarize(rows: Sequence[Mapping[str, object]],
                  num_partitions: int) -> Dict[str, float]:
        """Overall and per-partition sparsity of :meth:`layer_stats`
        rows."""
        total = sum(r['numel'] for r in rows)
        kept = sum(r['kept'] for r in rows)
        out = {'sparsity': 1.0 - kept / max(1, total)}
        for k in range(num_partitions):
            part = [r for r in rows if r['partition'] == k]
            n = sum(r['numel'] for r in part)
            out[f'sparsity_p{k}'] = 1.0 - sum(r['kept']
                                              for r in part) / max(1, n)
        return out

    # ------------------------------------------------------ serialization
    def fingerprint(self) -> torch.Tensor:
        """Cheap int64 summary of all masks, equal iff masks agree (with
        overwhelming probability): per layer, the pruned count and two
        wrapping sums over the pruned flat indices (``-1`` for dense)."""
        rows = []
        for name in self.names:
            word = self._words.get(name)
            if word is None:
                rows.append(torch.full((3, ), -1, dtype=torch.int64))
                continue
            # Reduced on the mask's device; only three numbers go to the
            # CPU, so the result is a CPU tensor whatever the device.
            idx = (word.reshape(-1) == 0).nonzero().squeeze(1).to(torch.int64)
            rows.append(
                torch.stack([
                    idx.new_tensor(idx.numel()),
                    idx.sum(), (idx * idx + idx * 40503).sum()
                ]).cpu())
        return torch.stack(rows)

    def state_dict(self) -> Dict[str, object]:
        """Masks bit-packed (keep-masks, 1 bit per weight) and targets."""
        return dict(
            masks={
                name: pack_mask(word != 0)
                for name, word in self._words.items()
            },
            num_keep=dict(self.num_keep),
            partitions=[list(g) for g in self.partitions])

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore :meth:`state_dict` output and zero the masked weights."""
        if state.get('partitions') is not None and [
                list(g) for g in state['partitions']
        ] != [list(g) for g in self.partitions]:
            raise GaPConfigError(
                'The checkpoint was trained with other GaP partitions than '
                'the current config builds; resume with the same '
                '`partitions`, `include`/`exclude` and model')
        masks = state.get('masks', {})
        unknown = sorted(set(masks) - set(self.names))
        if unknown:
            raise GaPConfigError(
                f'The checkpoint holds GaP masks for parameters '
                f'that are not prunable here: {unknown}')
        words = OrderedDict()
        for name in self.names:
            if name not in masks:
                continue
            keep = unpack_mask(masks[name], name)
            if tuple(keep.shape) != tuple(self.params[name].shape):
                raise GaPConfigError(
                    f'GaP mask for {name} has shape {tuple(keep.shape)}, '
                    f'the parameter has {tuple(self.params[name].shape)}')
            words[name] = keep_word(~keep).to(self.params[name].device)
        self._words = words
        self.num_keep.update({
            k: int(v)
            for k, v in state.get('num_keep', {}).items()
        })
        self.apply_masks_()
