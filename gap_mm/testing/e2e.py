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
from typing import Dict, Iterable, Sequence

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
