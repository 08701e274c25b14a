# Copyright (c) gap_mm contributors. All rights reserved.
"""What every check of the GPU check shares: verdicts, the JSON entry of a
check, timing statistics and the processes it starts."""
import argparse
import json
import os
import os.path as osp
import signal
import statistics
import subprocess
import sys
import time
import traceback
from typing import Callable, Dict, List, Optional

#: The checkout.
ROOT = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
#: The sparsity every engine check prunes to.
SPARSITY = 0.8


class Skip(Exception):
    """The check cannot run here; the message says why."""


class CheckFailed(Exception):
    """The check ran and found a problem; ``results`` holds what it
    measured."""

    def __init__(self, message: str, results: Optional[dict] = None):
        super().__init__(message)
        self.results = results or {}


class Findings:
    """The results of one check and the problems it found on the way."""

    def __init__(self) -> None:
        self.results: Dict[str, object] = {}
        self.problems: List[str] = []

    def expect(self, ok: bool, problem: str) -> bool:
        """Record ``problem`` unless ``ok``; return ``ok``."""
        if not ok:
            self.problems.append(problem)
        return bool(ok)

    def done(self) -> dict:
        """The results, or :class:`CheckFailed` naming every problem."""
        if self.problems:
            raise CheckFailed('; '.join(self.problems), self.results)
        return self.results


def run_check(fn: Callable[[], dict]) -> dict:
    """Run one check function and turn its outcome into a JSON entry."""
    start = time.time()
    entry: Dict[str, object] = dict(status='passed', reason=None, results={})
    try:
        entry['results'] = fn()
    except Skip as err:
        entry.update(status='skipped', reason=str(err))
    except CheckFailed as err:
        entry.update(status='failed', reason=str(err), results=err.results)
    except Exception as err:  # noqa: B902  one failure must not stop the run
        entry.update(
            status='failed',
            reason=f'{type(err).__name__}: {err}',
            error=traceback.format_exc()[-4000:])
    entry['elapsed_s'] = round(time.time() - start, 3)
    return entry


def stats(samples: List[float], digits: int = 6) -> dict:
    """Median, min and max of timings in seconds."""
    return dict(
        median_s=round(statistics.median(samples), digits),
        min_s=round(min(samples), digits),
        max_s=round(max(samples), digits),
        n=len(samples))


def write_json(path: str, data: dict) -> None:
    """Write ``data`` whole or not at all."""
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1, sort_keys=False, default=str)
        f.write('\n')
    os.replace(tmp, path)


def shown(path: str) -> str:
    """``path`` relative to the checkout when it is inside it."""
    rel = osp.relpath(path, ROOT)
    return path if rel.startswith('..') else rel


def log(message: str) -> None:
    print(f'[device_check] {message}', flush=True)


def kill(proc: subprocess.Popen) -> None:
    """End a child and everything it started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def versions(names: List[str]) -> Dict[str, Optional[str]]:
    from importlib import metadata
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def child_env(args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    env['PYTHONUNBUFFERED'] = '1'
    if args.cpu:
        env['CUDA_VISIBLE_DEVICES'] = ''
    return env


def probe_mmcv_ops(args: argparse.Namespace) -> str:
    """'cuda <version>', 'cpu only' or why mmcv.ops does not import, asked
    of a fresh interpreter."""
    code = ('import mmcv.ops as o; '
            'print(o.get_compiling_cuda_version())')
    try:
        proc = subprocess.run([sys.executable, '-c', code],
                              cwd=ROOT,
                              env=child_env(args),
                              capture_output=True,
                              text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        return 'unknown: import mmcv.ops took over 120 s'
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ['?'])[-1]
        return f'does not import: {last[:300]}'
    version = proc.stdout.strip()
    return 'cpu only' if version == 'not available' else f'cuda {version}'
