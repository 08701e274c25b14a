# Copyright (c) gap_mm contributors. All rights reserved.
"""Does a checkpoint hold this model's weights? Count, then decide.

MMEngine loads ``load_from`` (and the checkpoint of ``tools/test.py``) with
``strict=False``: a checkpoint of another model matches no key, MMEngine
logs the missing keys as a warning, and the run trains from scratch, or
tests random weights and reports mAP 0.000 with exit code 0.
:func:`check_weights_match` counts the model's tensors that the checkpoint
holds with the same name and shape, logs the count, and raises when too
few match.
"""
import logging
from typing import Dict, List, NamedTuple

import torch
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from .loading import CheckpointReadError, load_checkpoint, split_checkpoint

# MMEngine's Runner.load_checkpoint strips this by default (revise_keys)
_WRAPPER_PREFIX = 'module.'


class WeightsMatch(NamedTuple):
    """How a checkpoint's state_dict covers a model's."""
    total: int
    matched: List[str]
    missing: List[str]
    mismatched: List[str]


def match_weights(model: torch.nn.Module,
                  state_dict: Dict[str, torch.Tensor]) -> WeightsMatch:
    """Compare ``state_dict`` with the model's own by name and shape.

    Args:
        model (nn.Module): The model (a DDP-like wrapper is unwrapped).
        state_dict (dict): The checkpoint's tensors; a ``module.`` prefix
            is stripped as MMEngine's loader does.

    Returns:
        WeightsMatch: The model's tensor count, and the names matched,
        missing from the checkpoint and present with another shape.
    """
    if is_model_wrapper(model):
        model = model.module
    own = model.state_dict()
    theirs = {
        (k[len(_WRAPPER_PREFIX):] if k.startswith(_WRAPPER_PREFIX) else k): v
        for k, v in state_dict.items()
    }
    matched, missing, mismatched = [], [], []
    for name, tensor in own.items():
        if name not in theirs:
            missing.append(name)
        elif tuple(theirs[name].shape) != tuple(tensor.shape):
            mismatched.append(name)
        else:
            matched.append(name)
    return WeightsMatch(len(own), matched, missing, mismatched)


def _examples(names: List[str], count: int = 3) -> str:
    shown = ', '.join(names[:count])
    return shown + (', ...' if len(names) > count else '')


def check_weights_match(model: torch.nn.Module,
                        path: str,
                        what: str = 'load_from',
                        require_all: bool = False,
                        min_fraction: float = 0.5) -> WeightsMatch:
    """Raise if the checkpoint ``path`` holds too few of the model's
    tensors; log how many it holds.

    Args:
        model (nn.Module): The built model.
        path (str): The checkpoint (read with ``weights_only=True``).
        what (str): How the user gave it, named in the messages
            (``'load_from'``, ``'checkpoint'``).
        require_all (bool): Every tensor of the model must be there with
            its shape (testing: a missing head tests random weights).
            Defaults to False.
        min_fraction (float): Otherwise, the least fraction of the model's
            tensors that must match (fine-tuning with a new head is fine,
            another model is not). Defaults to 0.5.

    Returns:
        WeightsMatch: The comparison.

    Raises:
        CheckpointReadError: Naming the file, how many of the model's
            tensors matched, and examples of those that did not.
    """
    if not 0 <= min_fraction <= 1:
        raise ValueError(
            f'min_fraction must be in [0, 1], but got {min_fraction}')
    state_dict, _ = split_checkpoint(load_checkpoint(path), str(path))
    result = match_weights(model, state_dict)
    n_matched = len(result.matched)
    summary = (f'{what} {path} holds {n_matched} of the {result.total} '
               f'tensors of the model ({type(model).__name__})')
    details = []
    if result.missing:
        details.append(f'{len(result.missing)} are missing '
                       f'({_examples(result.missing)})')
    if result.mismatched:
        details.append(f'{len(result.mismatched)} have another shape '
                       f'({_examples(result.mismatched)})')
    too_few = n_matched < min_fraction * result.total
    if (require_all and details) or too_few or n_matched == 0:
        raise CheckpointReadError(
            f'{summary}: ' + '; '.join(details) +
            '. It is a checkpoint of another model; give one of this '
            'model' + ('' if require_all else
                       f' (at least {min_fraction:.0%} of its tensors)'))
    print_log(
        summary + (': ' + '; '.join(details) if details else ''),
        logger='current',
        level=logging.WARNING if details else logging.INFO)
    return result
