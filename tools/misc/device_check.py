# Copyright (c) gap_mm contributors. All rights reserved.
"""Check gap_mm on one NVIDIA GPU and write one JSON of the results.

``tools/misc/device_check.sh`` sets up the environment from a folder of
wheels and runs this script; ``--cpu`` rehearses every check that can run
on the CPU (CI runs it, ``tests/test_tools/test_device_check.py``). The
checks, in the order they run (docs/en/advanced_guides/gpu_check.md has
the JSON format and each check's fields):

* ``environment``: Python, torch, the GPU, nvcc, the installed stack;
* ``masks``: the engine's masks on device tensors (exact counts, the same
  masks as on the CPU, two optimizer steps and a GaP event);
* ``prune_event``: one GaP prune event on the device against the same on
  the CPU;
* ``masking_cost``: the masking of one step as a share of an R50-FPN-sized
  training step, and the masked step against the dense one;
* ``amp_fp16``, ``amp_bf16``: one ``GaPAmpOptimWrapper`` step, masks
  intact after it;
* ``mmcv_build``: mmcv built with its CUDA ops from the sdist in the wheels
  folder, within the time left (a rerun continues a build cut short);
* ``point_ops``: mmcv's CUDA point operators against the pure-torch ones;
* ``detector``, ``detector_amp``: a few iterations of the demo detector
  (``--amp`` for the second) and its checkpoint's masks.

Every check runs in a child process with a time limit, so a crash, a hang
or a poisoned CUDA context costs one check, not the run; the JSON is
rewritten after every check. The exit status is 1 when a check that ran
failed, else 0.

Usage::

    python tools/misc/device_check.py            # on a GPU
    python tools/misc/device_check.py --cpu      # the rehearsal
"""
import argparse
import collections
import datetime
import json
import os
import os.path as osp
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Dict, List, Optional

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
for path in (ROOT, HERE):  # gap_mm, and the checks of gpu_check/
    if path not in sys.path:
        sys.path.insert(0, path)

from gpu_check.common import (Findings, Skip, child_env,  # noqa: E402
                              kill, log, probe_mmcv_ops, run_check,
                              versions, write_json)
from gpu_check.engine import (EngineSetup, check_amp,  # noqa: E402
                              check_masking_cost, check_masks,
                              check_prune_event)
from gpu_check.mmcv_checks import (RESERVE_AFTER_BUILD,  # noqa: E402
                                   MmcvBuild, check_detector,
                                   check_point_ops, nvcc_info)

FORMAT = 'gap_mm-device-check/1'
#: Checks in the order they run, by the child process group that runs
#: them; ``environment`` and ``mmcv_build`` run in the main process.
GROUPS = collections.OrderedDict([
    ('environment', ['environment']),
    ('engine', ['masks', 'prune_event', 'masking_cost']),
    ('amp', ['amp_fp16', 'amp_bf16']),
    ('mmcv_build', ['mmcv_build']),
    ('point_ops', ['point_ops']),
    ('detector', ['detector']),
    ('detector_amp', ['detector_amp']),
])
#: Each child group's own time limit in seconds (the global budget may
#: cut it shorter).
GROUP_LIMITS = dict(
    engine=240, amp=150, point_ops=180, detector=240, detector_amp=180)


def static_skip(name: str, args: argparse.Namespace) -> Optional[str]:
    """Why check ``name`` cannot run in this mode, known before it starts,
    or None."""
    if args.cpu and name == 'amp_fp16':
        return ('--cpu: mmengine\'s CPU autocast takes bfloat16 only, and '
                'float16 needs loss scaling, which is CUDA\'s')
    if args.cpu and name == 'point_ops':
        return ('--cpu: mmcv\'s point operators are CUDA kernels; the CPU '
                'code is what they are compared with')
    if args.cpu and name == 'detector_amp':
        return '--cpu: tools/train.py --amp needs a GPU'
    return None


def child_main(args: argparse.Namespace) -> int:
    """Run one group of checks and write their entries to
    ``args.result`` after each."""
    out: Dict[str, dict] = {}
    setup: List[EngineSetup] = []

    def engine():
        if not setup:  # the AMP steps hook the plain-torch model's stem
            setup.append(
                EngineSetup(args, 'synthetic' if args.child ==
                            'amp' else args.model))
        return setup[0]

    def needs_device(fn):
        def wrapped():
            if not args.cpu:
                import torch
                if not torch.cuda.is_available():
                    raise Skip('no CUDA device')
            return fn()

        return wrapped

    checks = {
        'masks': lambda: check_masks(engine()),
        'prune_event': lambda: check_prune_event(engine()),
        'masking_cost': lambda: check_masking_cost(engine()),
        'amp_fp16': lambda: check_amp(engine, 'float16'),
        'amp_bf16': lambda: check_amp(engine, 'bfloat16'),
        'point_ops': lambda: check_point_ops(args),
        'detector': lambda: check_detector(args, amp=False),
        'detector_amp': lambda: check_detector(args, amp=True),
    }
    for name in GROUPS[args.child]:
        if name in args.skip or static_skip(name, args):
            continue  # the main process records these
        print(f'{name}: running', flush=True)
        entry = run_check(needs_device(checks[name]))
        out[name] = entry
        write_json(args.result, out)
        print(f'{name}: {entry["status"]}'
              f'{" (" + entry["reason"] + ")" if entry["reason"] else ""}'
              f' in {entry["elapsed_s"]:.1f} s', flush=True)
    return 0


class Orchestrator:
    """Runs the groups in order within the budget and keeps the JSON."""

    def __init__(self, args: argparse.Namespace, argv: List[str]) -> None:
        self.args = args
        self.argv = argv
        self.start = time.time()
        self.deadline = args.deadline or self.start + args.budget
        self.child: Optional[subprocess.Popen] = None
        self.build: Optional['MmcvBuild'] = None
        os.makedirs(args.work_dir, exist_ok=True)
        self.log = open(osp.join(args.work_dir, 'device_check.log'), 'a')
        self.data = dict(
            format=FORMAT,
            mode='cpu' if args.cpu else 'cuda',
            started=datetime.datetime.now().astimezone().isoformat(
                timespec='seconds'),
            finished=None,
            elapsed_s=None,
            budget_s=round(self.deadline - self.start, 1),
            command=' '.join([osp.relpath(__file__, ROOT)] + argv),
            ok=None,
            summary={},
            checks=collections.OrderedDict())

    def left(self) -> float:
        return self.deadline - time.time()

    def record(self, name: str, entry: dict) -> None:
        self.data['checks'][name] = entry
        counts = collections.Counter(
            e['status'] for e in self.data['checks'].values())
        self.data['summary'] = {
            s: counts.get(s, 0)
            for s in ('passed', 'failed', 'skipped')
        }
        self.data['ok'] = counts.get('failed', 0) == 0
        self.data['elapsed_s'] = round(time.time() - self.start, 3)
        write_json(self.args.out, self.data)
        reason = f': {entry["reason"]}' if entry.get('reason') else ''
        log(f'{time.time() - self.start:6.1f} s  {name}: '
            f'{entry["status"]}{reason}')

    def skip(self, name: str, reason: str) -> None:
        self.record(name,
                    dict(status='skipped', reason=reason, results={},
                         elapsed_s=0.0))

    def run(self) -> int:
        """Run every group; return the exit status (1 when a check
        failed, or the run itself broke)."""
        try:
            self._run_groups()
        except Exception:  # noqa: B902  keep the JSON of what did run
            self.data['error'] = traceback.format_exc()[-4000:]
            self.data['ok'] = False
            log(f'the run broke:\n{self.data["error"]}')
        finally:
            for proc in (self.child, self.build and self.build.proc):
                if proc is not None and proc.poll() is None:
                    kill(proc)
        self.data['finished'] = datetime.datetime.now().astimezone(
        ).isoformat(timespec='seconds')
        self.record_summary()
        return 0 if self.data['ok'] else 1

    def _run_groups(self) -> None:
        if self.args.setup_json and osp.isfile(self.args.setup_json):
            with open(self.args.setup_json) as f:
                self.record('setup', json.load(f))
        build = None
        for group, names in GROUPS.items():
            wanted = [n for n in names if n not in self.args.skip]
            for name in names:
                if name in self.args.skip:
                    self.skip(name, 'left out with --skip')
            if not wanted:
                continue
            if group == 'environment':
                self.record('environment', run_check(self.environment))
            elif group == 'mmcv_build':
                build = self.build = build or MmcvBuild(self)
                self.record('mmcv_build', run_check(build.finish))
            elif self.left() < 20:
                for name in wanted:
                    self.skip(name, f'the time budget ran out '
                              f'({max(0, self.left()):.0f} s left)')
            else:
                static = {n: static_skip(n, self.args) for n in wanted}
                for name in [n for n in wanted if static[n]]:
                    self.skip(name, static[name])
                wanted = [n for n in wanted if not static[n]]
                if not wanted:
                    continue
                if group == 'amp' and 'mmcv_build' not in self.args.skip:
                    # it compiles while the (GPU-bound) AMP steps run
                    build = self.build = MmcvBuild(self)
                    if build.problem is None and self.left() > 60:
                        build.begin()
                self.run_group(group, wanted)

    def record_summary(self) -> None:
        write_json(self.args.out, self.data)
        log(f'done in {time.time() - self.start:.1f} s: '
            f'{self.data["summary"]}; results in {self.args.out}')

    def run_group(self, group: str, names: List[str]) -> None:
        """Run a child process for ``group`` and record its checks."""
        own = GROUP_LIMITS[group]
        limit = min(own, self.left() - 10)
        fd, result = tempfile.mkstemp(
            prefix=f'{group}-', suffix='.json', dir=self.args.work_dir)
        os.close(fd)
        os.unlink(result)
        cmd = [
            sys.executable, '-u',
            osp.abspath(__file__), *self.argv, '--child', group, '--result',
            result, '--child-limit',
            str(int(limit))
        ]
        log(f'{time.time() - self.start:6.1f} s  {group}: {names} '
            f'(limit {limit:.0f} s)')
        tail = collections.deque(maxlen=30)
        self.child = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=child_env(self.args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors='replace',
            start_new_session=True)

        def pump(stream):
            for line in stream:
                tail.append(line)
                self.log.write(f'[{group}] {line}')
                if self.args.verbose or re.match(r'^\w+: ', line):
                    print(f'  [{group}] {line}', end='', flush=True)

        reader = threading.Thread(
            target=pump, args=(self.child.stdout, ), daemon=True)
        reader.start()
        timed_out = False
        try:
            rc = self.child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill(self.child)
            rc = self.child.returncode
        reader.join(5)
        self.log.flush()
        self.child = None
        entries = {}
        if osp.isfile(result):
            with open(result) as f:
                entries = json.load(f)
            os.unlink(result)
        for name in names:
            if name in entries:
                self.record(name, entries[name])
            elif timed_out and limit < own:
                self.skip(name, f'the time budget ran out: the {group} '
                          f'checks had {limit:.3g} s')
            else:
                what = (f'did not finish within its {limit:.3g} s limit'
                        if timed_out else
                        f'its process ended with exit status {rc}')
                self.record(
                    name,
                    dict(
                        status='failed',
                        reason=f'{name} {what}',
                        results={},
                        error=''.join(tail)[-3000:],
                        elapsed_s=None))

    def interrupt(self, signum, frame) -> None:
        """SIGTERM / SIGINT: stop the child and the mmcv build, record,
        write, exit 1."""
        for proc in (self.child, self.build and self.build.proc):
            if proc is not None and proc.poll() is None:
                kill(proc)
        self.data['interrupted'] = f'signal {signum}'
        self.data['ok'] = False
        self.data['finished'] = datetime.datetime.now().astimezone(
        ).isoformat(timespec='seconds')
        self.record_summary()
        os._exit(1)

    # -------------------------------------------------------- in-process
    def environment(self) -> dict:
        """What this machine has; fails only when a GPU run finds no
        CUDA device."""
        import torch
        f = Findings()
        r = f.results
        r.update(
            python=sys.version.split()[0],
            executable=sys.executable,
            platform=platform.platform(),
            cpu_count=os.cpu_count(),
            torch=torch.__version__,
            torch_cuda=torch.version.cuda,
            torch_threads=torch.get_num_threads(),
            cuda_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            r.update(
                gpu=props.name,
                gpu_count=torch.cuda.device_count(),
                capability='{}.{}'.format(*torch.cuda.get_device_capability(
                    0)),
                gpu_memory_gib=round(props.total_memory / 2**30, 1),
                bf16_supported=torch.cuda.is_bf16_supported(),
                cudnn=torch.backends.cudnn.version())
        r['packages'] = versions([
            'numpy', 'mmengine', 'mmcv', 'mmdet', 'mmdet3d', 'pycocotools',
            'safetensors', 'setuptools', 'opencv-python-headless',
            'opencv-python', 'scipy', 'shapely', 'pytest'
        ])
        r['mmcv_ops'] = probe_mmcv_ops(self.args)
        from device_wheels import BASE, missing, read_lines
        r['base_missing'] = missing(read_lines(BASE))
        if not self.args.cpu:
            f.expect(
                not r['base_missing'], f'the machine lacks {r["base_missing"]}'
                f' of tools/misc/{BASE} (prepare the wheels with --with-base)')
        r['nvcc'] = nvcc_info()
        r['git'] = _git()
        if not self.args.cpu:
            f.expect(torch.cuda.is_available(),
                     'torch sees no CUDA device (torch.version.cuda = '
                     f'{torch.version.cuda}); the GPU checks are skipped')
        return f.done()


def _git() -> dict:
    def git(*cmd):
        try:
            return subprocess.run(['git', *cmd],
                                  cwd=ROOT,
                                  capture_output=True,
                                  text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ''

    return dict(
        commit=git('rev-parse', '--short', 'HEAD') or None,
        dirty=bool(git('status', '--porcelain', '--untracked-files=no')))


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--cpu',
        action='store_true',
        help='rehearse on the CPU: every check that can run there')
    parser.add_argument(
        '--out',
        help='the JSON of results (default: <work-dir>/device_check.json)')
    parser.add_argument(
        '--work-dir',
        default=osp.join(ROOT, 'work_dirs', 'device_check'),
        help='logs, the mmcv build, the detector runs')
    parser.add_argument(
        '--budget',
        type=float,
        default=460,
        help='seconds for the whole run (default 460)')
    parser.add_argument(
        '--deadline',
        type=float,
        help='the Unix time the run must end by (overrides --budget)')
    parser.add_argument(
        '--wheels', help='the folder of wheels with the mmcv sdist')
    parser.add_argument('--setup-json', help=argparse.SUPPRESS)
    parser.add_argument(
        '--model',
        choices=['auto', 'synthetic', 'mmdet'],
        default='auto',
        help='the R50-FPN of the engine checks: auto takes mmdet\'s Faster '
        'R-CNN on a GPU where mmcv\'s CUDA ops import, else the '
        'plain-torch RetinaNet')
    parser.add_argument(
        '--width',
        type=int,
        help='stem width of the plain-torch model (default: 64 on a GPU, '
        '16 with --cpu)')
    parser.add_argument('--size', type=int, help='image side (512 / 128)')
    parser.add_argument('--batch', type=int, help='images per step (2 / 1)')
    parser.add_argument(
        '--rounds', type=int, help='timed rounds per figure (5 / 3)')
    parser.add_argument(
        '--skip',
        default='',
        help='comma-separated checks to leave out, e.g. detector_amp')
    parser.add_argument(
        '--mmcv-build-limit',
        type=float,
        help='seconds for the mmcv build (default: what the budget leaves '
        f'after {RESERVE_AFTER_BUILD} s for the checks that need it)')
    parser.add_argument(
        '--build-jobs', type=int, help='parallel compile jobs (all cores)')
    parser.add_argument(
        '--verbose', action='store_true', help='echo every child line')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--result', help=argparse.SUPPRESS)
    parser.add_argument(
        '--child-limit', type=float, default=600, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(',') if s.strip()}
    known = {n for names in GROUPS.values() for n in names}
    unknown = args.skip - known
    if unknown:
        parser.error(f'--skip names unknown checks {sorted(unknown)}; the '
                     f'checks are {sorted(known)}')
    args.work_dir = osp.abspath(args.work_dir)
    args.out = osp.abspath(args.out or osp.join(args.work_dir,
                                                'device_check.json'))
    if args.wheels:
        args.wheels = osp.abspath(args.wheels)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    orch = Orchestrator(args, argv)
    signal.signal(signal.SIGTERM, orch.interrupt)
    signal.signal(signal.SIGINT, orch.interrupt)
    log(f'{orch.data["mode"]} run, budget {orch.left():.0f} s, results in '
        f'{args.out}')
    return orch.run()


if __name__ == '__main__':
    sys.exit(main())
