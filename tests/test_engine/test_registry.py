# Copyright (c) gap_mm contributors. All rights reserved.
import subprocess
import sys

import pytest
import torch
from mmengine.registry import HOOKS, MODELS, OPTIM_WRAPPERS, DefaultScope

import gap_mm
from gap_mm.engine import GaPAmpOptimWrapper, GaPHook, GaPOptimWrapper


@pytest.mark.parametrize('scope', ['mmengine', 'mmdet', 'mmdet3d'])
def test_found_from_every_default_scope(scope):
    # mmdet's and mmdet3d's registries are siblings under mmengine's root,
    # so only a root registration is visible from both.
    with DefaultScope.overwrite_default_scope(scope):
        hook = HOOKS.build(dict(type='GaPHook', schedule=dict(type='static')))
        assert isinstance(hook, GaPHook)
        param = torch.nn.Parameter(torch.zeros(2))
        wrapper = OPTIM_WRAPPERS.build(
            dict(type='GaPOptimWrapper'),
            default_args=dict(optimizer=torch.optim.SGD([param], lr=0.1)))
        assert isinstance(wrapper, GaPOptimWrapper)
        assert OPTIM_WRAPPERS.get('GaPAmpOptimWrapper') is GaPAmpOptimWrapper
        # the model builders of slimming and SCS, from the root MODELS
        for name in ('SlimModel', 'SCSModel'):
            assert MODELS.get(name).__module__.startswith('gap_mm.models.')


def _fresh_interpreter(code):
    """Run ``code`` in a new interpreter: this one imported everything at
    collection already."""
    proc = subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_import_registers_everything():
    out = _fresh_interpreter("""
import gap_mm
from mmdet3d.registry import DATASETS, METRICS, MODELS, TRANSFORMS
from mmengine.registry import HOOKS, OPTIM_WRAPPERS
assert HOOKS.get('GaPHook') is gap_mm.GaPHook
assert OPTIM_WRAPPERS.get('GaPOptimWrapper') is gap_mm.GaPOptimWrapper
assert OPTIM_WRAPPERS.get('GaPAmpOptimWrapper') is gap_mm.GaPAmpOptimWrapper
for name in ('GMPHook', 'RigLHook', 'SETHook', 'GRegHook', 'SCSHook'):
    assert HOOKS.get(name) is getattr(gap_mm, name), name
for registry, name in [(DATASETS, 'ShapeNetPartDataset'),
                       (METRICS, 'PartSegMetric'),
                       (TRANSFORMS, 'PackPartSegInputs'),
                       (MODELS, 'PointNet2PartSeg'),
                       (MODELS, 'PartSegHead')]:
    assert registry.get(name).__module__.startswith('gap_mm3d.'), name
from mmdet.registry import MODELS as DET_MODELS
assert DET_MODELS.get('FixedSSDHead') is gap_mm.models.FixedSSDHead
print('OK', gap_mm.__version__)
""")
    assert out.startswith('OK ' + gap_mm.__version__)


def test_task_package_does_not_import_the_engine():
    out = _fresh_interpreter("""
import sys
import gap_mm3d
from mmdet3d.registry import MODELS
assert MODELS.get('PointNet2PartSeg') is not None
print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('gap_')}))
""")
    assert out.strip() == "['gap_mm3d']"


def test_import_without_mmdet3d_registers_the_engine():
    # Detection-only installs (`pip install gap_mm[det]`) have no mmdet3d.
    out = _fresh_interpreter("""
import sys
sys.modules['mmdet3d'] = None  # as if it were not installed
import gap_mm
from mmengine.registry import HOOKS
assert HOOKS.get('GaPHook') is gap_mm.GaPHook
print(sorted(m for m in sys.modules if m.startswith('gap_mm3d')))
""")
    assert out.strip() == '[]'


def test_import_without_mmdet_registers_the_engine():
    # `pip install gap_mm` alone: neither mmdet nor mmdet3d, no SSD head.
    out = _fresh_interpreter("""
import sys
sys.modules['mmdet'] = sys.modules['mmdet3d'] = None  # not installed
import gap_mm
from mmengine.registry import HOOKS
assert HOOKS.get('GaPHook') is gap_mm.GaPHook
print(gap_mm.models.__all__)
""")
    assert out.strip() == "['SCSModel', 'SlimModel']"
