# Copyright (c) gap_mm contributors. All rights reserved.
"""Helpers for end-to-end tests that drive the tools in subprocesses."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys
from typing import Dict, Iterable, Sequence

import torch

#: Source of a module that registers ``DumpRankMasksHook``: after training it
#: saves each rank's keep-masks to ``work_dir/masks_rank<r>.pth``. LOWEST
#: priority, so it runs after GaPHook and every other hook. Write it into a
#: folder on the subprocess' PYTHONPATH and name it in ``custom_imports``.
RANK_MASK_HOOK_SOURCE = '''
import os
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpRankMasksHook(Hook):
    priority = 'LOWEST'

    def after_train(self, runner):
        gap = next(h for h in runner.hooks if type(h).__name__ == 'GaPHook')
        masks = {n: gap.sparsifier.keep_mask(n) for n in gap.sparsifier.names}
        torch.save(masks, os.path.join(runner.work_dir,
                                       f'masks_rank{get_rank()}.pth'))
'''


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
    """``torch.load(weights_only=True)`` with gap_mm's allow-list."""
    import gap_mm  # noqa: F401  (allow-lists mmengine's checkpoint classes)
    return torch.load(path, map_location='cpu', weights_only=True)


def checkpoint_masks(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The keep-masks that GaPHook saved in a checkpoint."""
    from gap_mm.sparsity import unpack_mask
    return {
        name: unpack_mask(entry, name)
        for name, entry in checkpoint['gap_state']['sparsifier']
        ['masks'].items()
    }


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
