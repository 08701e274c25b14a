# Copyright (c) gap_mm contributors. All rights reserved.
"""Read MMEngine checkpoints safely and split off their training state.

Shared by ``tools/model_converters/export_sparse.py`` and
``publish_model.py``. Checkpoints are read with
``torch.load(weights_only=True)``; when MMEngine's own objects stop that, it
is retried with exactly those allow-listed (:mod:`gap_mm.utils.safe_load`).
``weights_only`` is never turned off.
"""
import pickle
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from .sparse_format import gap_masks, verify_masked_zero

_KEPT_KEYS = ('state_dict', 'meta')


def _global_name(item: Any) -> str:
    if isinstance(item, tuple):
        return item[1]
    return f'{item.__module__}.{item.__qualname__}'


def load_checkpoint(path: str) -> Any:
    """``torch.load`` with ``weights_only=True`` and MMEngine's globals.

    Args:
        path (str): The checkpoint file.

    Returns:
        Any: The loaded checkpoint, on the CPU.

    Raises:
        SystemExit: If the file cannot be read, or needs globals outside
            the allow-list.
    """
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:
        pass  # most likely MMEngine's own objects; retry with them allowed
    except (OSError, RuntimeError) as err:
        raise SystemExit(f'error: cannot read checkpoint {path}: {err}')

    from gap_mm.utils.safe_load import mmengine_checkpoint_safe_globals
    safe = mmengine_checkpoint_safe_globals()
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        allowed = {_global_name(item) for item in safe}
        try:
            unsafe = [
                name for name in
                torch.serialization.get_unsafe_globals_in_checkpoint(path)
                if name not in allowed
            ]
        except Exception:  # the listing is only a hint
            unsafe = []
        raise SystemExit(
            f'error: cannot load {path} with weights_only=True: it needs '
            f'globals outside the allow-list {unsafe or ""} ({err}). '
            'weights_only is never turned off, because that would run '
            'arbitrary code from the file. Re-save the checkpoint with only '
            'tensors and plain Python data in "state_dict" and "meta".')


def split_checkpoint(
        checkpoint: Any) -> Tuple[Dict[str, torch.Tensor], Dict, List[str]]:
    """Return (state_dict, meta, names of the dropped top-level keys)."""
    if not isinstance(checkpoint, Mapping):
        raise SystemExit('error: the checkpoint must be a dict, but got '
                         f'{type(checkpoint).__name__}')
    if 'state_dict' in checkpoint:
        state_dict = checkpoint['state_dict']
        meta = checkpoint.get('meta') or {}
        dropped = [str(k) for k in checkpoint if k not in _KEPT_KEYS]
    elif checkpoint and all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state_dict, meta, dropped = checkpoint, {}, []  # a bare state_dict
    else:
        raise SystemExit('error: the checkpoint has no "state_dict"; keys: '
                         f'{list(checkpoint)}')
    return state_dict, meta, dropped


def to_jsonable(obj: Any) -> Any:
    """Convert checkpoint ``meta`` into JSON data (repr for the unknown)."""
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


def check_masks(state_dict: Mapping[str, torch.Tensor], gap_state: Any,
                allow_nonzero: bool) -> Optional[Dict[str, Dict]]:
    """Verify the GaP masks; exit unless pruned weights are 0 or allowed."""
    if not gap_masks(gap_state):
        print('no GaP masks in the checkpoint: nothing to verify')
        return None
    try:
        report = verify_masked_zero(state_dict, gap_state)
    except ValueError as err:
        raise SystemExit(f'error: GaP masks do not match the weights: {err}')
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
