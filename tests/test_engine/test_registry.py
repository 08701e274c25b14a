# Copyright (c) gap_mm contributors. All rights reserved.
import pytest
import torch
from mmengine.registry import HOOKS, OPTIM_WRAPPERS, DefaultScope

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


def test_import_registers_the_task_modules():
    from mmdet3d.registry import DATASETS, METRICS, MODELS, TRANSFORMS
    assert DATASETS.get('ShapeNetPartDataset') is not None
    assert METRICS.get('PartSegMetric') is not None
    assert TRANSFORMS.get('PackPartSegInputs') is not None
    assert MODELS.get('PointNet2PartSeg') is not None
    assert gap_mm.__version__
