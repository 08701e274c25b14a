# Copyright (c) gap_mm contributors. All rights reserved.
"""Load checkpoints the one safe way, through MMEngine's CheckpointLoader.

:class:`mmengine.runner.CheckpointLoader` resolves the file (local paths,
``http(s)://``, ``open-mmlab://`` and the other schemes it registers) and
reads it with the loaders of :mod:`gap_mm.checkpoint.schemes` (registered
for every scheme by ``import gap_mm``): a remote file is downloaded into
MMEngine's cache and read as a local one, with ``weights_only=True`` and
the objects MMEngine itself writes into checkpoints allow-listed by
:func:`gap_mm.utils.safe_load.allow_mmengine_checkpoint_globals`.
``weights_only`` is never turned off.
"""
import os
import os.path as osp
import pickle
import zipfile
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from mmengine.runner import CheckpointLoader

from gap_mm.errors import GaPConfigError
from gap_mm.utils.safe_load import (allow_mmengine_checkpoint_globals,
                                    globals_refused_without_gap_mm,
                                    safe_global_names)
from .schemes import SAFE_SCHEMES, register_safe_schemes


#: The converter that writes a checkpoint plain mmdet / mmdet3d load.
PUBLISH_TOOL = 'tools/model_converters/publish_model.py'


def publish_command(path: str) -> str:
    """The command that writes, beside ``path``, the file plain mmdet /
    mmdet3d (no gap_mm, ``torch.load(weights_only=True)``) loads."""
    stem, ext = osp.splitext(path)
    return f'python {PUBLISH_TOOL} {path} {stem}_published{ext or ".pth"}'


def plain_load_note(path: str) -> Optional[str]:
    """Why plain mmdet / mmdet3d, without gap_mm, cannot load ``path``, and
    the command that makes a file they load; None if they can (or for a
    remote path, which is not inspected).

    A training checkpoint holds MMEngine's training state (the message
    hub's ``HistoryBuffer``, numpy values), which ``torch.load`` refuses
    with its default ``weights_only=True`` unless gap_mm's allow-list is
    there (:func:`gap_mm.utils.safe_load.globals_refused_without_gap_mm`).
    """
    path = os.fspath(path)
    if '://' in path or not osp.isfile(path):
        return None
    refused = globals_refused_without_gap_mm(path)
    if not refused:
        return None
    shown = ', '.join(refused[:3]) + (' ...' if len(refused) > 3 else '')
    return (f'{path} holds training state ({shown}) that plain mmdet / '
            f'mmdet3d refuse without gap_mm ("Weights only load failed": '
            f'torch.load reads weights only): mmdet\'s tools/test.py with '
            f'an upstream config, init_detector and DetInferencer stop on '
            f'it. Write the file they load (state_dict and meta): '
            f'{publish_command(path)}')


class CheckpointReadError(GaPConfigError):
    """A file that is missing, not a checkpoint, or needs globals outside
    the allow-list."""


def load_checkpoint(path: Union[str, os.PathLike],
                    map_location: str = 'cpu') -> Dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    Args:
        path (str): A local path or any URL scheme of MMEngine's
            ``CheckpointLoader``.
        map_location (str): Where tensors go. Defaults to ``'cpu'``.

    Returns:
        dict: The checkpoint (a bare state_dict is returned as it is).

    Raises:
        CheckpointReadError: Naming the file and what is wrong with it.
    """
    allow_mmengine_checkpoint_globals()
    path = os.fspath(path)
    if '://' not in path and not osp.isfile(path):
        raise CheckpointReadError(f'checkpoint {path} does not exist')
    loader = CheckpointLoader._get_checkpoint_loader(path)
    if loader not in SAFE_SCHEMES.values():
        # another package registered this scheme after gap_mm did
        register_safe_schemes()
        loader = CheckpointLoader._get_checkpoint_loader(path)
    if loader not in SAFE_SCHEMES.values():
        raise CheckpointReadError(
            f'{path}: its scheme is read by {loader.__qualname__}, not by a '
            f'weights-only loader of gap_mm.checkpoint.schemes; refusing it')
    try:
        checkpoint = CheckpointLoader.load_checkpoint(
            path, map_location=map_location, logger='silent')
    except pickle.UnpicklingError as err:
        if '://' not in path and not zipfile.is_zipfile(path):
            # torch.save has written zip archives since torch 1.6; another
            # file reaches the legacy unpickler, which refuses it
            raise CheckpointReadError(
                f'{path} is not a PyTorch checkpoint: it is no torch.save '
                f'zip archive, and the weights-only unpickler stops at '
                f'{_unpickler_reason(err)!r}') from err
        if 'Unsupported global' not in str(err):
            # a damaged archive, not a forbidden class
            raise CheckpointReadError(
                f'{path} is not a readable PyTorch checkpoint: the '
                f'weights-only unpickler stops at '
                f'{_unpickler_reason(err)!r}') from err
        unsafe = _unsafe_globals(path)
        raise CheckpointReadError(
            f'cannot load {path} with weights_only=True: it needs globals '
            f'outside the allow-list{" " + str(unsafe) if unsafe else ""} '
            f'({str(err).splitlines()[0]}). weights_only is never turned '
            f'off, because that would run arbitrary code from the file; '
            f're-save it with only tensors and plain Python data.') from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointReadError(
            f'{path} is not a PyTorch checkpoint: '
            f'{str(err).splitlines()[0] if str(err) else err!r}') from err
    if not isinstance(checkpoint, Mapping):
        raise CheckpointReadError(
            f'{path} is not a checkpoint: it holds a '
            f'{type(checkpoint).__name__}, not a dict')
    return checkpoint


def _unpickler_reason(err: Exception) -> str:
    """The line of torch's weights-only error that says what it met."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for index, line in enumerate(lines):
        _, found, rest = line.partition('WeightsUnpickler error:')
        if found and (rest.strip() or index + 1 < len(lines)):
            return rest.strip() or lines[index + 1]
    return lines[0] if lines else repr(err)


def _unsafe_globals(path: str) -> List[str]:
    """The globals of ``path`` that the allow-list lacks (a hint only)."""
    try:
        from torch import serialization

        # public since torch 2.5; torch 2.4 has only the private name
        get_safe_globals = getattr(serialization, 'get_safe_globals', None)
        if get_safe_globals is None:
            get_safe_globals = serialization._get_safe_globals
        allowed = safe_global_names(get_safe_globals())
        return [
            g for g in serialization.get_unsafe_globals_in_checkpoint(path)
            if g not in allowed
        ]
    except Exception:  # noqa: BLE001  (only a hint)
        return []


def split_checkpoint(
        checkpoint: Mapping[str, Any],
        where: str = 'the checkpoint'
) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """``(state_dict, meta)`` of an MMEngine checkpoint or a bare
    state_dict. The state_dict keeps the ``_metadata`` (module versions)
    that ``torch.save`` stored.

    Raises:
        CheckpointReadError: If there is no dict of tensors to be found.
    """
    if 'state_dict' in checkpoint:
        state_dict = checkpoint['state_dict']
        meta = checkpoint.get('meta') or {}
    elif checkpoint and all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state_dict, meta = checkpoint, {}
    else:
        keys = list(checkpoint)
        raise CheckpointReadError(
            f'{where} has no "state_dict"; its keys are {keys[:10]}'
            f'{" ..." if len(keys) > 10 else ""}')
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointReadError(
            f'the "state_dict" of {where} is not a dict of tensors')
    out = OrderedDict(state_dict)
    # torch.save keeps the modules' versions in ``_metadata``; keep them too
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        out._metadata = metadata  # type: ignore[attr-defined]
    return out, dict(meta)
