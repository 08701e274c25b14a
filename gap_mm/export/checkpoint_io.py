# Copyright (c) gap_mm contributors. All rights reserved.
"""What the export tools add on top of :mod:`gap_mm.checkpoint`.

Shared by ``tools/model_converters/export_sparse.py`` and
``publish_model.py``: they read checkpoints with
:func:`gap_mm.checkpoint.load_checkpoint` (MMEngine's ``CheckpointLoader``,
``weights_only=True``) and split them with
:func:`gap_mm.checkpoint.split_checkpoint`; this module names the training
state they drop, makes ``meta`` JSON data and checks the GaP masks.
"""
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from gap_mm.checkpoint import (CheckpointReadError, load_checkpoint,
                               read_state, split_checkpoint,
                               verify_masked_zero)

#: Top-level checkpoint keys that the tools keep.
KEPT_KEYS = ('state_dict', 'meta')


def dropped_keys(checkpoint: Mapping[str, Any]) -> List[str]:
    """The top-level keys of a checkpoint besides :data:`KEPT_KEYS`.

    Args:
        checkpoint (Mapping[str, Any]): An MMEngine checkpoint or a bare
            state_dict.

    Returns:
        list[str]: E.g. ``['optimizer', 'message_hub', 'gap_state']``;
        empty for a bare state_dict.
    """
    if 'state_dict' not in checkpoint:
        return []
    return [str(k) for k in checkpoint if k not in KEPT_KEYS]


def to_jsonable(obj: Any) -> Any:
    """Convert checkpoint ``meta`` into JSON data (repr for the unknown).

    Args:
        obj (Any): ``checkpoint['meta']`` or a part of it.

    Returns:
        Any: Dicts (with str keys), lists, str, numbers, bool and None.
        Arrays and tensors of up to 4096 elements become lists; larger ones
        and other objects their ``repr``.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        numel = obj.numel() if isinstance(obj, torch.Tensor) else obj.size
        return obj.tolist() if numel <= 4096 else repr(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    return repr(obj)


def check_masks(state_dict: Mapping[str, torch.Tensor],
                checkpoint: Mapping[str, Any],
                allow_nonzero: bool,
                where: str = 'the checkpoint') -> Optional[Dict[str, Dict]]:
    """Verify that every weight a GaP mask prunes is 0; print the result.

    Args:
        state_dict (Mapping[str, torch.Tensor]): The weights.
        checkpoint (Mapping[str, Any]): The checkpoint, whose sparsity state
            is read with :func:`gap_mm.checkpoint.read_state`.
        allow_nonzero (bool): Only warn, instead of exiting, if pruned
            weights are not 0.
        where (str): How to name the checkpoint in messages.
            Defaults to ``'the checkpoint'``.

    Returns:
        dict, optional: :func:`gap_mm.checkpoint.verify_masked_zero`'s
        report, or None if the checkpoint has no GaP masks.

    Raises:
        SystemExit: With a one-line message if the sparsity state cannot be
            read, a mask does not fit the weights, or pruned weights are not
            0 and ``allow_nonzero`` is False.
    """
    try:
        state = read_state(checkpoint, where)
    except ValueError as err:  # CheckpointStateError
        raise SystemExit(f'error: {err}')
    try:
        report = verify_masked_zero(state_dict, state)
    except ValueError as err:  # CheckpointStateError or a bad packed mask
        raise SystemExit(f'error: GaP masks do not match the weights: {err}')
    if not report:
        print('no GaP masks in the checkpoint: nothing to verify')
        return None
    bad = {n: r for n, r in report.items() if r['nonzero_masked']}
    if bad:
        total = sum(r['nonzero_masked'] for r in bad.values())
        listing = ', '.join(f"{n} ({r['nonzero_masked']})"
                            for n, r in list(bad.items())[:10])
        msg = (f'{total} weights pruned by the GaP masks are not 0, in '
               f'{len(bad)} tensors: {listing}')
        if not allow_nonzero:
            raise SystemExit(
                f'error: {msg}. The weights and the masks disagree; export '
                'anyway with --allow-nonzero-masked.')
        print(f'warning: {msg}; exporting the weights as they are')
    else:
        print(f'verified: every weight pruned by the {len(report)} GaP '
              'masks is 0')
    return report


def read_trained_checkpoint(
    path: str,
    out: str,
    allow_nonzero: bool = False
) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any], Optional[Dict[str, Dict]]]:
    """What both converters do first: read ``path``, name the training
    state they drop, and verify the masks.

    Args:
        path (str): The training checkpoint.
        out (str): The converter's output, which must be another file.
        allow_nonzero (bool): See :func:`check_masks`.

    Returns:
        tuple: ``(state_dict, meta, report)``, ``report`` as
        :func:`check_masks` returns it.

    Raises:
        SystemExit: With a one-line message for ``out == path``, a file that
            cannot be read, or masks that disagree with the weights.
    """
    if os.path.abspath(path) == os.path.abspath(out):
        raise SystemExit('error: OUT must differ from CHECKPOINT')
    try:
        checkpoint = load_checkpoint(path)
        state_dict, meta = split_checkpoint(checkpoint, path)
    except CheckpointReadError as err:
        raise SystemExit(f'error: {err}')
    dropped = dropped_keys(checkpoint)
    if dropped:
        print(f"dropped training state: {', '.join(dropped)}")
    report = check_masks(state_dict, checkpoint, allow_nonzero, path)
    return state_dict, meta, report
