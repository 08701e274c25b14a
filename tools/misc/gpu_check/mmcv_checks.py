# Copyright (c) gap_mm contributors. All rights reserved.
"""The checks that need mmcv's CUDA ops: building them, the point
operators and the demo detector."""
import argparse
import glob
import json
import math
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tarfile
import time
from typing import Dict, List, Optional

from .common import (ROOT, SPARSITY, CheckFailed, Findings, Skip, child_env,
                     kill, log, probe_mmcv_ops, shown, versions)

#: The mmcv version of scripts/setup.sh, whose sdist the wheels folder
#: holds.
MMCV_VERSION = '2.1.0'
#: Seconds kept after the mmcv build for the checks that need it.
RESERVE_AFTER_BUILD = 170
DEMO_CONFIG = 'configs/gap/cgap_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py'


def check_point_ops(args: argparse.Namespace) -> dict:
    """mmcv's CUDA point operators against the pure-torch ones: the
    project's own comparison test, then the times of both at the
    PointNet++ SSG part-seg sizes."""
    import torch
    reason = _mmcv_cuda_problem()
    if reason:
        raise Skip(reason)
    f = Findings()
    test = ('tests/test_ops/test_point_ops.py::test_against_mmcv_cuda')
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         test],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120)
    f.results['comparison_test'] = test
    f.results['comparison_passed'] = proc.returncode == 0
    f.results['comparison_output'] = proc.stdout[-2000:]
    f.expect(proc.returncode == 0,
             f'{test} failed (pytest exit {proc.returncode})')

    sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
    from bench_point_ops import SA1, SA2, median_ms, sphere_points
    from bench_point_ops import stage_cases

    from gap_mm3d.ops import dispatch, point_ops_cpu
    gen = torch.Generator().manual_seed(0)
    tables = {}
    for impl, ops, device in (('mmcv_cuda', dispatch, 'cuda'),
                              ('torch_cuda', point_ops_cpu, 'cuda'),
                              ('torch_cpu', point_ops_cpu, 'cpu')):
        device = torch.device(device)
        rows = {}
        for stage, num, channels in ((SA1, 2048, 128), (SA2, 512, 256)):
            xyz = sphere_points(8, num, device, gen)
            cases = stage_cases(ops, xyz, stage['npoint'], stage['radius'],
                                stage['nsample'], stage['channels'],
                                channels, gen)
            times = median_ms([fn for _, fn in cases], 3, device)
            for (label, _), ms in zip(cases, times):
                rows[f'B8 N{num} {label}'] = round(ms, 3)
        tables[impl] = rows
    f.results['times_ms'] = tables
    f.results['mmcv_over_torch_cuda'] = {
        k: round(tables['mmcv_cuda'][k] / max(v, 1e-9), 3)
        for k, v in tables['torch_cuda'].items()
    }
    return f.done()


def _mmcv_cuda_problem() -> Optional[str]:
    """Why mmcv's CUDA ops cannot be used here, or None."""
    try:
        import mmcv
        import mmcv.ops
    except Exception as err:  # noqa: B902
        return f'mmcv.ops does not import ({type(err).__name__}: {err})'
    version = getattr(mmcv.ops, 'get_compiling_cuda_version', lambda: None)()
    if version in (None, 'not available'):
        return (f'mmcv {mmcv.__version__} was built without CUDA ops '
                f'(see mmcv_build)')
    return None


def check_detector(args: argparse.Namespace, amp: bool) -> dict:
    """A few iterations of the demo detector (C-GaP RetinaNet R18-FPN at
    80% ERK) through ``tools/train.py`` on generated shapes, evaluated by
    CocoMetric (``amp``: trained with ``--amp``, not evaluated), and its
    checkpoint's masks."""
    cuda = not args.cpu
    if cuda:
        reason = _mmcv_cuda_problem()
    else:
        try:
            import mmcv.ops  # noqa: F401
            reason = None
        except Exception as err:  # noqa: B902
            reason = f'mmcv.ops does not import ({type(err).__name__})'
    if reason:
        raise Skip(reason)
    for module in ('mmdet', 'pycocotools'):
        try:
            __import__(module)
        except Exception as err:  # noqa: B902
            raise Skip(f'{module} does not import: {err}')
    f = Findings()
    work = osp.join(args.work_dir, 'detector_amp' if amp else 'detector')
    data = osp.join(args.work_dir, 'synthetic_coco')
    env = child_env(args)
    if not osp.isfile(osp.join(data, 'annotations', 'instances_val2017.json')):
        subprocess.run([
            sys.executable, 'tools/dataset_converters/gen_synthetic_coco.py',
            '--out', data, '--num-train', '48', '--num-val', '16',
            '--img-size', '160', '--seed', '0'
        ],
                       cwd=ROOT,
                       env=env,
                       check=True,
                       stdout=subprocess.DEVNULL,
                       timeout=120)
    period = 3 if cuda else 1
    iters = 8 * period + (6 if cuda else 2)  # K=4 x T x R=2, fine-tune
    batch = 8 if cuda else 2
    val_interval = iters if not amp else 10 * iters
    options = {
        'train_dataloader.dataset.data_root': data + '/',
        'train_dataloader.batch_size': batch,
        'train_dataloader.num_workers': 1,
        'val_dataloader.dataset.data_root': data + '/',
        'val_evaluator.ann_file': osp.join(data, 'annotations',
                                           'instances_val2017.json'),
        'train_cfg.max_iters': iters,
        'train_cfg.val_interval': val_interval,
        'param_scheduler.1.begin': iters - 4,
        'param_scheduler.1.end': iters,
        'param_scheduler.1.T_max': 4,
        'custom_hooks.0.schedule.period': period,
        # an untrained detector scores below 0.05: keep every box, so that
        # CocoMetric has results to evaluate
        'model.test_cfg.score_thr': 0.0,
        'default_hooks.logger.interval': 2,
        'default_hooks.checkpoint.interval': iters,
    }
    shutil.rmtree(work, ignore_errors=True)
    cmd = [sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir', work]
    if amp:
        cmd.append('--amp')
    cmd += ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]
    f.results.update(
        config=DEMO_CONFIG,
        iters=iters,
        batch=batch,
        gap_period=period,
        amp=amp,
        command=' '.join(cmd[1:]))
    start = time.time()
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=max(30, args.child_limit - 60))
    f.results['train_s'] = round(time.time() - start, 3)
    if proc.returncode != 0:
        f.results['output_tail'] = proc.stdout[-3000:]
        raise CheckFailed(f'tools/train.py exited {proc.returncode}',
                          f.results)
    scalars = sorted(glob.glob(osp.join(work, '*', 'vis_data',
                                        'scalars.json')))
    records = []
    if scalars:
        with open(scalars[-1]) as fp:
            records = [json.loads(line) for line in fp if line.strip()]
    losses = [r['loss'] for r in records if 'loss' in r]
    f.results['losses'] = losses
    f.expect(losses and all(math.isfinite(v) for v in losses),
             f'the logged losses are missing or not finite: {losses}')
    if not amp:
        metrics = [r for r in records if 'coco/bbox_mAP' in r]
        f.results['bbox_mAP'] = (metrics[-1]['coco/bbox_mAP']
                                 if metrics else None)
        f.expect(metrics, 'no coco/bbox_mAP was logged')
    f.results.update(_checkpoint_report(work, amp, f))
    return f.done()


def _checkpoint_report(work: str, amp: bool, f: Findings) -> dict:
    """Sparsity and masked zeros of the run's last checkpoint."""
    from gap_mm.checkpoint import (load_checkpoint, read_state,
                                   split_checkpoint, verify_masked_zero)
    with open(osp.join(work, 'last_checkpoint')) as fp:
        path = fp.read().strip()
    ckpt = load_checkpoint(path)
    state_dict, _ = split_checkpoint(ckpt, path)
    report = verify_masked_zero(state_dict, read_state(ckpt, path))
    numel = sum(r['numel'] for r in report.values())
    pruned = sum(r['masked'] for r in report.values())
    nonzero = sum(r['nonzero_masked'] for r in report.values())
    out = dict(
        checkpoint=shown(path),
        masked_layers=len(report),
        sparsity_of_masked_layers=pruned / max(1, numel),
        nonzero_masked=nonzero)
    f.expect(report, 'the checkpoint holds no masks')
    f.expect(nonzero == 0, f'{nonzero} pruned weights are not 0')
    f.expect(
        abs(out['sparsity_of_masked_layers'] - SPARSITY) < 0.01,
        f'sparsity {out["sparsity_of_masked_layers"]:.4f}, not {SPARSITY}')
    if amp:
        scaler = 'loss_scaler' in (ckpt.get('optimizer') or {})
        out['checkpoint_has_loss_scaler'] = scaler
        f.expect(scaler, 'the optimizer state has no loss_scaler: was the '
                 'AMP wrapper used?')
    return out


def _cuda_home() -> Optional[str]:
    """The CUDA toolkit folder to build with: $CUDA_HOME / $CUDA_PATH, then
    torch's guess, /usr/local/cuda, /usr/local/cuda-*, and the folder above
    the nvcc on PATH; the first that holds ``bin/nvcc`` and
    ``include/cuda_runtime.h`` (an nvcc on PATH may be a wrapper script
    elsewhere)."""
    candidates = [os.environ.get('CUDA_HOME'), os.environ.get('CUDA_PATH')]
    try:
        from torch.utils.cpp_extension import CUDA_HOME
        candidates.append(CUDA_HOME)
    except Exception:  # noqa: B902
        pass
    candidates.append('/usr/local/cuda')
    candidates += sorted(glob.glob('/usr/local/cuda-*'), reverse=True)
    nvcc = shutil.which('nvcc')
    if nvcc:
        candidates.append(osp.dirname(osp.dirname(osp.realpath(nvcc))))
    for home in candidates:
        if home and osp.isfile(osp.join(home, 'bin', 'nvcc')) and osp.isfile(
                osp.join(home, 'include', 'cuda_runtime.h')):
            return home
    return None


def nvcc_info() -> dict:
    """The CUDA compiler and toolkit torch's extension builder is given."""
    home = _cuda_home()
    path = osp.join(home, 'bin', 'nvcc') if home else shutil.which('nvcc')
    if not path:
        return dict(path=None, version=None, cuda_home=None)
    try:
        text = subprocess.run([path, '--version'],
                              capture_output=True,
                              text=True,
                              timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        text = ''
    match = re.search(r'release (\d+\.\d+)', text)
    return dict(
        path=path, version=match.group(1) if match else None, cuda_home=home)


class MmcvBuild:
    """Build mmcv with its CUDA ops from the sdist in the wheels folder.

    The sdist is unpacked once into ``<work-dir>/mmcv-<version>`` and built
    there with ninja, so a build cut short by the time limit leaves its
    object files, and the next run continues from them. A finished build
    is installed with the mmdet3d packages
    (``tools/misc/device_requirements_3d.txt``), which need mmcv.ops.
    """

    def __init__(self, orch) -> None:
        self.orch = orch
        self.args = orch.args
        self.proc: Optional[subprocess.Popen] = None
        self.results: Dict[str, object] = {}
        self.begun = None
        self.installed = False
        self.problem = self._problem()

    def _problem(self) -> Optional[str]:
        """Why no build is started, or None."""
        env = self.orch.data['checks'].get('environment', {})
        ops = env.get('results', {}).get('mmcv_ops', '')
        self.results['mmcv_ops_before'] = ops
        if ops.startswith('cuda'):
            self.installed = True
            return 'mmcv.ops with CUDA kernels is installed already'
        if self.args.cpu:
            return ('--cpu: mmcv\'s CUDA ops are built on a GPU machine '
                    f'(here mmcv.ops: {ops or "not probed"})')
        import torch
        if not torch.cuda.is_available():
            return 'no CUDA device'
        if not self.args.wheels:
            return 'no --wheels folder with the mmcv sdist'
        sdists = glob.glob(
            osp.join(self.args.wheels, f'mmcv-{MMCV_VERSION}.tar.gz'))
        if not sdists:
            return f'no mmcv-{MMCV_VERSION}.tar.gz in {self.args.wheels}'
        self.sdist = sdists[0]
        nvcc = env.get('results', {}).get('nvcc') or nvcc_info()
        self.results['nvcc'] = nvcc
        if not nvcc.get('path') or not nvcc.get('cuda_home'):
            return ('no CUDA toolkit with nvcc and its headers found '
                    '(CUDA_HOME, /usr/local/cuda*, PATH)')
        if (nvcc.get('version') and torch.version.cuda and
                nvcc['version'].split('.')[0] !=
                torch.version.cuda.split('.')[0]):
            return (f'nvcc {nvcc["version"]} and torch\'s CUDA '
                    f'{torch.version.cuda} differ in the major version')
        return None

    def _source(self) -> str:
        src = osp.join(self.args.work_dir, f'mmcv-{MMCV_VERSION}')
        if not osp.isfile(osp.join(src, 'setup.py')):
            with tarfile.open(self.sdist) as tar:
                if hasattr(tarfile, 'data_filter'):
                    tar.extractall(self.args.work_dir, filter='data')
                else:
                    tar.extractall(self.args.work_dir)
        return src

    def _objects(self) -> dict:
        src = osp.join(self.args.work_dir, f'mmcv-{MMCV_VERSION}')
        csrc = osp.join(src, 'mmcv', 'ops', 'csrc', 'pytorch')
        sources = [
            p for pattern in ('*.cpp', 'cpu/*.cpp', 'cuda/*.cu', 'cuda/*.cpp')
            for p in glob.glob(osp.join(csrc, pattern))
        ]
        objects = glob.glob(
            osp.join(src, 'build', '**', '*.o'), recursive=True)
        return dict(objects_compiled=len(objects), objects_total=len(sources))

    def begin(self) -> None:
        """Start the build in the background."""
        import torch
        src = self._source()
        os.makedirs(osp.join(self.args.work_dir, 'mmcv-dist'), exist_ok=True)
        cap = '{}.{}'.format(*torch.cuda.get_device_capability(0))
        jobs = self.args.build_jobs or os.cpu_count() or 4
        env = child_env(self.args)
        env.update(
            MMCV_WITH_OPS='1',
            FORCE_CUDA='1',
            TORCH_CUDA_ARCH_LIST=cap,
            MAX_JOBS=str(jobs),
            PIP_NO_INDEX='1',
            PIP_DISABLE_PIP_VERSION_CHECK='1')
        env['CUDA_HOME'] = self.results['nvcc']['cuda_home']
        env['PATH'] = (osp.join(env['CUDA_HOME'], 'bin') + os.pathsep +
                       env.get('PATH', ''))
        ninja = _ninja_dir()
        if ninja:
            env['PATH'] = ninja + os.pathsep + env.get('PATH', '')
        self.results.update(
            sdist=osp.basename(self.sdist),
            source=shown(src),
            arch=cap,
            jobs=jobs,
            ninja=bool(ninja))
        self.log_path = osp.join(self.args.work_dir, 'mmcv-build.log')
        self.results['log'] = shown(self.log_path)
        self.results.update(
            {f'{k}_before': v
             for k, v in self._objects().items()})
        log = open(self.log_path, 'a')
        cmd = [
            sys.executable, '-m', 'pip', 'wheel', '--no-build-isolation',
            '--no-deps', '--no-index', '-w',
            osp.join(self.args.work_dir, 'mmcv-dist'), src
        ]
        log(f'{time.time() - self.orch.start:6.1f} s  mmcv_build: started '
            f'in the background for sm_{cap.replace(".", "")} with '
            f'{jobs} jobs (log {self.results["log"]})')
        self.begun = time.time()
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True)

    def finish(self) -> dict:
        """Wait for the build within the time left, then install it."""
        if self.problem and not self.installed:
            raise Skip(self.problem)
        if not self.installed:
            self._build()
        self._install_3d()
        return self.results

    def _build(self) -> None:
        if self.proc is None:
            if self.orch.left() < 60:
                raise Skip(f'too little time left for the mmcv build '
                           f'({self.orch.left():.0f} s)')
            self.begin()
        if self.args.mmcv_build_limit:
            ends = [self.begun + self.args.mmcv_build_limit]
        else:
            # Until the checks that need mmcv must start; a build not done
            # by then leaves them no time anyway, so it goes on until the
            # last seconds of the budget, for the next run.
            ends = [self.orch.deadline - RESERVE_AFTER_BUILD,
                    self.orch.deadline - 20]
        self.results['limit_s'] = round(ends[-1] - self.begun)
        rc = None
        for end in ends:
            try:
                rc = self.proc.wait(timeout=max(1, end - time.time()))
                break
            except subprocess.TimeoutExpired:
                if end != ends[-1]:
                    log(f'{time.time() - self.orch.start:6.1f} s  '
                        f'mmcv_build: not done in time for the checks that '
                        f'need it; it goes on, for the next run')
        if rc is None:
            kill(self.proc)
        self.results['build_s'] = round(time.time() - self.begun, 1)
        self.results.update(self._objects())
        if rc is None:
            raise Skip(
                f'the mmcv build did not finish in the '
                f'{self.results["build_s"]:.0f} s it had '
                f'({self.results["objects_compiled"]} of '
                f'{self.results["objects_total"]} objects compiled); run '
                f'the check again on this machine to continue it')
        if rc != 0:
            with open(self.log_path, errors='replace') as f:
                tail = f.read()[-3000:]
            raise CheckFailed(f'the mmcv build exited {rc}',
                              dict(self.results, log_tail=tail))
        wheels = sorted(
            glob.glob(
                osp.join(self.args.work_dir, 'mmcv-dist', 'mmcv-*.whl')))
        self._pip([wheels[-1]])
        self.results['wheel'] = osp.basename(wheels[-1])
        self.results['mmcv_ops_after'] = probe_mmcv_ops(self.args)
        if not str(self.results['mmcv_ops_after']).startswith('cuda'):
            raise CheckFailed(
                'the built mmcv has no CUDA ops: '
                f'{self.results["mmcv_ops_after"]}', self.results)

    def _install_3d(self) -> None:
        """Install mmdet3d and what gap_mm3d imports, which need mmcv.ops,
        from the wheels folder, unless mmdet3d is there."""
        if versions(['mmdet3d'])['mmdet3d'] or not self.args.wheels:
            return
        self._pip([
            '--find-links', self.args.wheels, '-r',
            osp.join(ROOT, 'tools', 'misc', 'device_requirements_3d.txt')
        ])
        self.results['installed_3d'] = True

    def _pip(self, extra: List[str]) -> None:
        cmd = [
            sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
            '--no-index', '--disable-pip-version-check', *extra
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode:
            raise CheckFailed(
                f'pip install {" ".join(extra)} exited {proc.returncode}',
                dict(self.results, pip_output=proc.stderr[-2000:]))


def _ninja_dir() -> Optional[str]:
    """The folder of a ninja executable, for torch's parallel builds."""
    path = shutil.which('ninja')
    if path:
        return osp.dirname(path)
    try:
        import ninja
        return ninja.BIN_DIR
    except (ImportError, AttributeError):
        return None
