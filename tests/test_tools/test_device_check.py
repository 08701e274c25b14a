# Copyright (c) gap_mm contributors. All rights reserved.
"""The GPU check (tools/misc/device_check.py) and its wheels folder.

The CPU rehearsal (``--cpu``) runs every check the CPU can and writes the
documented JSON (docs/en/advanced_guides/gpu_check.md); a run out of time
skips what is left and a check past its limit is stopped and failed; and
``device_wheels.py verify`` finds what a wheels folder lacks.
"""
import collections
import importlib.util
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time
import zipfile

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MISC = osp.join(ROOT, 'tools', 'misc')
TOOL = osp.join(MISC, 'device_check.py')
CHECKS = [
    'environment', 'masks', 'prune_event', 'masking_cost', 'amp_fp16',
    'amp_bf16', 'mmcv_build', 'point_ops', 'detector', 'detector_amp'
]


def _load(name):
    spec = importlib.util.spec_from_file_location(name,
                                                  osp.join(MISC, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env():
    return dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join(
            p for p in (ROOT, os.environ.get('PYTHONPATH')) if p))


def _rehearse(tmp_path, *extra):
    out = tmp_path / 'device_check.json'
    proc = subprocess.run([
        sys.executable, TOOL, '--cpu', '--out',
        str(out), '--work-dir',
        str(tmp_path / 'work'), *extra
    ],
                          cwd=ROOT,
                          env=_env(),
                          capture_output=True,
                          text=True,
                          timeout=900)
    assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def _mmcv_ops_imports():
    try:
        import mmcv.ops  # noqa: F401
    except Exception:  # noqa: B902
        return False
    return True


def test_cpu_rehearsal_runs_every_check_the_cpu_can(tmp_path):
    proc, report = _rehearse(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report['format'] == 'gap_mm-device-check/1'
    assert report['mode'] == 'cpu' and report['ok'] is True
    checks = report['checks']
    assert list(checks) == CHECKS
    counts = collections.Counter(e['status'] for e in checks.values())
    assert report['summary'] == {
        s: counts.get(s, 0)
        for s in ('passed', 'failed', 'skipped')
    }
    for name, entry in checks.items():
        assert entry['status'] in ('passed', 'skipped'), (name, entry)
        assert (entry['reason'] is None) == (entry['status'] == 'passed')

    env = checks['environment']['results']
    assert env['cuda_available'] is False  # children see no GPU either
    masks = checks['masks']['results']
    assert masks['device'] == 'cpu'
    assert masks['kept'] == masks['kept_target']
    assert masks['miscounted_layers'] == []
    assert masks['layers_unlike_cpu'] == []
    assert masks['fingerprint_equals_cpu'] is True
    assert masks['steps_masked_nonzero_layers'] == []
    assert masks['steps_weights_moved'] > 0
    assert abs(masks['sparsity_achieved'] - 0.8) < 1e-3
    event = checks['prune_event']['results']
    for side in ('device_s', 'cpu_s'):
        assert event[side]['n'] == 3
        assert 0 < event[side]['min_s'] <= event[side]['median_s'] <= event[
            side]['max_s']
    assert event['partition_weights'] < event['prunable_weights']
    cost = checks['masking_cost']['results']
    assert cost['masking_share_pct'] > 0
    assert cost['meets_target'] == (cost['masking_share_pct'] <= 2.0)
    amp = checks['amp_bf16']['results']
    assert amp['autocast_dtypes'] == ['torch.bfloat16']
    assert amp['weight_dtypes'] == ['torch.float32']
    assert amp['step_applied'] is True and amp['loss_scaling'] is False
    assert amp['dense_grads_at_pruned'] > 0
    for name in ('amp_fp16', 'mmcv_build', 'point_ops', 'detector_amp'):
        assert checks[name]['status'] == 'skipped'
        assert checks[name]['reason'].startswith('--cpu: '), name
    detector = checks['detector']
    if not _mmcv_ops_imports():
        assert detector['status'] == 'skipped'
        return
    assert detector['status'] == 'passed', detector
    result = detector['results']
    assert result['nonzero_masked'] == 0 and result['masked_layers'] > 0
    assert abs(result['sparsity_of_masked_layers'] - 0.8) < 0.01
    assert result['losses'] and all(math.isfinite(v) for v in result['losses'])
    assert result['bbox_mAP'] is not None


def test_a_run_out_of_time_skips_what_is_left(tmp_path):
    proc, report = _rehearse(tmp_path, '--deadline', str(time.time() - 1))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    checks = report['checks']
    assert checks['environment']['status'] == 'passed'
    for name in ('masks', 'prune_event', 'masking_cost', 'amp_bf16',
                 'detector'):
        assert checks[name]['status'] == 'skipped'
        assert checks[name]['reason'].startswith('the time budget ran out')


def test_a_check_past_its_limit_is_stopped_and_failed(tmp_path, monkeypatch):
    device_check = _load('device_check')
    monkeypatch.setitem(device_check.GROUP_LIMITS, 'engine', 0.5)
    argv = [
        '--cpu', '--out',
        str(tmp_path / 'out.json'), '--work-dir',
        str(tmp_path / 'work')
    ]
    orch = device_check.Orchestrator(device_check.parse_args(argv), argv)
    # a child process imports torch and gap_mm for longer than 0.5 s
    orch.run_group('engine', ['masks', 'prune_event'])
    for name in ('masks', 'prune_event'):
        entry = orch.data['checks'][name]
        assert entry['status'] == 'failed'
        assert entry['reason'] == (f'{name} did not finish within its 0.5 s '
                                   'limit')
    assert orch.data['ok'] is False
    written = json.loads((tmp_path / 'out.json').read_text())
    assert written['summary'] == {'passed': 0, 'failed': 2, 'skipped': 0}


def _wheel(folder, filename, requires=()):
    name = filename.split('-')[0]
    version = filename.split('-')[1]
    metadata = [f'Name: {name}', f'Version: {version}']
    metadata += [f'Requires-Dist: {r}' for r in requires]
    with zipfile.ZipFile(folder / filename, 'w') as zf:
        zf.writestr(f'{name}-{version}.dist-info/METADATA',
                    'Metadata-Version: 2.1\n' + '\n'.join(metadata) + '\n')


@pytest.fixture
def wheels(tmp_path):
    """A complete fake wheels folder for the pinned lists."""
    device_wheels = _load('device_wheels')
    for listing in device_wheels.PINNED:
        for line in device_wheels.read_lines(listing):
            name, version = line.split('==')
            _wheel(tmp_path, f'{name.replace("-", "_")}-{version}-py3-none-'
                   'any.whl')
    (tmp_path / 'mmcv-2.1.0.tar.gz').write_bytes(b'')
    return device_wheels, tmp_path


def test_verify_accepts_a_complete_folder(wheels):
    device_wheels, folder = wheels
    assert device_wheels.verify(str(folder)) == []
    assert device_wheels.main(['verify', str(folder)]) == 0


def test_verify_names_what_the_folder_lacks(wheels):
    device_wheels, folder = wheels
    (folder / 'mmcv-2.1.0.tar.gz').unlink()
    (folder / 'addict-2.4.0-py3-none-any.whl').unlink()
    # a wheel for another Python is no wheel for CPython 3.12
    (folder / 'termcolor-3.3.0-py3-none-any.whl').unlink()
    _wheel(folder, 'termcolor-3.3.0-cp311-cp311-manylinux2014_x86_64.whl')
    # a requirement no list provides, and one the folder has too old
    (folder / 'mmdet-3.3.0-py3-none-any.whl').unlink()
    _wheel(folder, 'mmdet-3.3.0-py3-none-any.whl', [
        'leftpad>=1', 'shapely>=2.1', 'open3d', 'tomli; python_version < '
        '"3.11"', 'numpy'
    ])
    problems = device_wheels.verify(str(folder))
    assert len(problems) == 5, problems
    assert any('no mmcv-2.1.0.tar.gz' in p for p in problems)
    assert any('wheel of addict==2.4.0' in p for p in problems)
    assert any('wheel of termcolor==3.3.0' in p for p in problems)
    assert any('requires leftpad>=1, which no list provides' in p
               for p in problems)
    assert any('requires shapely>=2.1, the folder has shapely 2.0.7' in p
               for p in problems)
    assert device_wheels.main(['verify', str(folder)]) == 1


def test_wheel_tags_for_cpython_312():
    device_wheels = _load('device_wheels')
    fits = device_wheels.fits
    assert fits('shapely-2.0.7-cp312-cp312-manylinux_2_17_x86_64.'
                'manylinux2014_x86_64.whl')
    assert fits('pycocotools-2.0.11-cp312-abi3-manylinux_2_28_x86_64.whl')
    assert not fits('shapely-2.0.7-cp312-cp312-manylinux_2_31_x86_64.whl')
    assert not fits('shapely-2.0.7-cp312-cp312-macosx_11_0_arm64.whl')
    assert not fits('numpy-1.26.4-cp311-cp311-manylinux2014_x86_64.whl')
