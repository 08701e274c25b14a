# Copyright (c) gap_mm contributors. All rights reserved.
"""Helpers for end-to-end tests that drive the tools in subprocesses.

The hooks such tests put into their configs are in
:mod:`gap_mm.testing.hooks` (``custom_imports=['gap_mm.testing.hooks']``).
"""
import json
import os
import os.path as osp
import socket
import subprocess
import sys
from typing import Any, Dict, Iterable, List, Mapping, Sequence

import numpy as np
import torch


def free_port() -> int:
    """A free TCP port on localhost (a fixed one collides with other
    distributed runs on the machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_tool(args: Sequence[str],
             cwd: str,
             pythonpath: Iterable[str] = (),
             check: bool = True,
             timeout: float = 600,
             **env: str) -> subprocess.CompletedProcess:
    """Run a tool with one thread per process and this interpreter.

    Raises:
        AssertionError: With the tail of stdout and stderr, if ``check`` and
            the tool fails.
    """
    full_env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([*map(str, pythonpath), cwd]),
        PYTHON=sys.executable,
        OMP_NUM_THREADS='1',
        **env)
    proc = subprocess.run([str(a) for a in args],
                          cwd=cwd,
                          env=full_env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}')
    return proc


def load_checkpoint(path: str) -> dict:
    """A checkpoint, read as every gap_mm tool reads it
    (:func:`gap_mm.checkpoint.load_checkpoint`, ``weights_only=True``)."""
    from gap_mm.checkpoint import load_checkpoint as load
    return load(path)


def checkpoint_masks(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The keep-masks that a sparsity hook saved in a checkpoint."""
    from gap_mm.checkpoint import keep_masks, read_state
    return keep_masks(read_state(checkpoint))


def logged_metrics(work_dir: str, key: str) -> dict:
    """The first record holding ``key`` in the JSON logs under
    ``work_dir``."""
    for root, _, files in os.walk(work_dir):
        for name in sorted(files):
            if name.endswith('.json'):
                with open(osp.join(root, name)) as f:
                    for line in f:
                        record = json.loads(line)
                        if key in record:
                            return record
    raise AssertionError(f'no {key} logged under {work_dir}')


#: The entries of ``checkpoint['meta']`` that are state (the rest records
#: when and where the run ran).
META_STATE = ('epoch', 'iter', 'seed')
#: The message hub's scalars that are timings, not results.
TIMING_SCALARS = ('train/time', 'train/data_time')


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    # by bits, so that NaNs at the same places with the same payload match
    return torch.equal(
        a.detach().cpu().reshape(-1).contiguous().view(torch.uint8),
        b.detach().cpu().reshape(-1).contiguous().view(torch.uint8))


def _differences(a: Any, b: Any, where: str, out: List[str]) -> None:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and _same_tensor(a, b)):
            out.append(where)
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and a.dtype == b.dtype and a.shape == b.shape
                and a.tobytes() == b.tobytes()):
            out.append(where)
    elif isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                out.append(f'{where}[{key!r}] (only in '
                           f'{"the second" if key not in a else "the first"})')
            else:
                _differences(a[key], b[key], f'{where}[{key!r}]', out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f'{where} (length {len(a)} vs {len(b)})')
        for i, (x, y) in enumerate(zip(a, b)):
            _differences(x, y, f'{where}[{i}]', out)
    elif type(a) is not type(b) or a != b:
        out.append(where)


def checkpoint_differences(a: Mapping[str, Any],
                           b: Mapping[str, Any]) -> List[str]:
    """Where two checkpoints (dicts as :func:`load_checkpoint` returns them)
    differ, bit for bit; [] when they hold the same state.

    Every entry but ``meta`` and ``message_hub`` is compared in full:
    ``state_dict``, ``optimizer``, ``param_schedulers`` and a method's
    state (``gap_state`` with its masks, ``scs_state``, ...); tensors and
    arrays by dtype, shape and bits, everything else by type and ``==``.
    Of ``meta`` only :data:`META_STATE` is state; of the message hub, the
    history of every logged scalar (loss, lr, grad_norm, a method's
    scalars: one value per iteration) but the timings
    (:data:`TIMING_SCALARS`).

    Returns:
        list[str]: The paths that differ, e.g. ``"['state_dict']['conv.
        weight']"``.
    """
    out: List[str] = []
    skip = ('meta', 'message_hub')
    _differences({k: v
                  for k, v in a.items() if k not in skip},
                 {k: v
                  for k, v in b.items() if k not in skip}, '', out)
    meta_a, meta_b = a.get('meta') or {}, b.get('meta') or {}
    _differences({k: meta_a.get(k)
                  for k in META_STATE}, {k: meta_b.get(k)
                                         for k in META_STATE}, "['meta']",
                 out)
    _differences(_scalar_history(a), _scalar_history(b),
                 "['message_hub']['log_scalars']", out)
    return out


def _scalar_history(checkpoint: Mapping[str, Any]) -> Dict[str, Any]:
    """The values and counts of the message hub's HistoryBuffers, timings
    left out."""
    scalars = (checkpoint.get('message_hub') or {}).get('log_scalars') or {}
    return {
        key: buffer.data
        for key, buffer in scalars.items() if key not in TIMING_SCALARS
    }
