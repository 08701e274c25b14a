# Copyright (c) gap_mm contributors. All rights reserved.
"""PointNet++ part segmentation on the CPU: SSG/MSG, the category one-hot,
predictions restricted to a shape's own parts, and the full configs."""
import os.path as osp

import pytest
import torch
from mmdet3d.models.layers import PointFPModule, PointSAModuleMSG
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample, PointData
from mmengine.config import Config
from mmengine.registry import DefaultScope

import gap_mm  # noqa: F401
from gap_mm3d.datasets import (SHAPENET_PART_CATEGORIES,
                               SHAPENET_PART_CATEGORY_PARTS)
from gap_mm3d.models import (PartSegHead, PointNet2FPModule, PointNet2PartSeg,
                             PointNet2SAModule)
from gap_mm.testing.config_check import build_gap_training

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(autouse=True)
def mmdet3d_scope():
    """Build in mmdet3d's scope whatever scope earlier tests left."""
    with DefaultScope.overwrite_default_scope('mmdet3d'):
        yield


AIRPLANE, CHAIR, TABLE = 0, 4, 15

TINY_SA = [
    dict(
        num_point=32,
        radii=(0.3, ),
        sample_nums=(8, ),
        mlp_channels=((16, 16), )),
    dict(
        num_point=8,
        radii=(0.3, 0.6),
        sample_nums=(4, 8),
        mlp_channels=((16, 32), (16, 32))),
    dict(num_point=None, mlp_channels=((32, 64), )),
]
TINY_FP = [(32, ), (32, ), (16, 16)]


def _batch(num_points=128, categories=(AIRPLANE, CHAIR), seed=0):
    gen = torch.Generator().manual_seed(seed)
    points, samples = [], []
    for category_id in categories:
        xyz = torch.rand(num_points, 3, generator=gen) * 2 - 1
        normals = torch.nn.functional.normalize(
            torch.randn(num_points, 3, generator=gen), dim=1)
        points.append(torch.cat([xyz, normals], dim=1))
        parts = torch.tensor(SHAPENET_PART_CATEGORY_PARTS[
            SHAPENET_PART_CATEGORIES[category_id]])
        sample = Det3DDataSample(metainfo=dict(category_id=category_id))
        sample.gt_pts_seg = PointData(pts_semantic_mask=parts[torch.randint(
            0, len(parts), (num_points, ), generator=gen)])
        samples.append(sample)
    return dict(inputs=dict(points=points), data_samples=samples)


def _tiny(**kwargs):
    torch.manual_seed(0)
    kwargs.setdefault('decode_head', dict(channels=16))
    return PointNet2PartSeg(sa_cfgs=TINY_SA, fp_channels=TINY_FP, **kwargs)


def _own_parts(category_id):
    name = SHAPENET_PART_CATEGORIES[category_id]
    return set(SHAPENET_PART_CATEGORY_PARTS[name])


@pytest.mark.parametrize('variant, last_fp_in, num_params', [
    ('ssg', 128 + 16 + 3 + 3, 1407282),
    ('msg', 128 + 16 + 3 + 3, 1736122),
])
def test_variant_loss_backward_predict(variant, last_fp_in, num_params):
    torch.manual_seed(0)
    model = PointNet2PartSeg(variant=variant)
    assert sum(p.numel() for p in model.parameters()) == num_params
    # The category one-hot (16), xyz (3) and normals (3) join the last
    # feature-propagation layer, on top of the propagated features.
    last_fp = model.fp_modules[-1].mlps.layer0.conv
    assert last_fp.in_channels == last_fp_in

    data = model.data_preprocessor(_batch(num_points=512), True)
    # Det3DDataPreprocessor passes the clouds through as a list.
    assert isinstance(data['inputs']['points'], list)
    model.train()
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_sem_seg'}
    assert torch.isfinite(losses['loss_sem_seg'])
    losses['loss_sem_seg'].backward()
    # Every parameter gets a gradient.
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(_batch(num_points=512), False)
        results = model(**data, mode='predict')
    for sample in results:
        pred = sample.pred_pts_seg.pts_semantic_mask
        assert pred.shape == (512, ) and pred.dtype == torch.long
        assert set(pred.tolist()) <= _own_parts(sample.category_id)


def test_predictions_only_among_own_category_parts():
    model = _tiny().eval()
    # Make a Table part win every unrestricted argmax.
    with torch.no_grad():
        model.decode_head.conv_seg.bias.zero_()
        model.decode_head.conv_seg.bias[49] = 1e4
    data = model.data_preprocessor(
        _batch(categories=(AIRPLANE, CHAIR, TABLE)), False)
    with torch.no_grad():
        logits = model(**data, mode='tensor')
        assert logits.shape == (3, 50, 128)
        assert (logits.argmax(1) == 49).all()
        results = model(**data, mode='predict')
    for sample in results:
        pred = sample.pred_pts_seg.pts_semantic_mask
        assert set(pred.tolist()) <= _own_parts(sample.category_id)
    assert (results[2].pred_pts_seg.pts_semantic_mask == 49).all()


def test_category_one_hot_changes_the_output():
    model = _tiny().eval()
    fp_in = model.fp_modules[-1].mlps.layer0.conv.in_channels
    assert fp_in == 32 + 16 + 3 + 3
    a = _batch(categories=(AIRPLANE, ))
    b = _batch(categories=(CHAIR, ))
    with torch.no_grad():
        la = model(**model.data_preprocessor(a, False), mode='tensor')
        lb = model(**model.data_preprocessor(b, False), mode='tensor')
    assert not torch.allclose(la, lb)


def test_xyz_only_and_custom_categories():
    model = _tiny(
        in_channels=3,
        category_parts=[[0, 1], [2, 3, 4]],
        decode_head=dict(channels=16, num_classes=5))
    assert model.fp_modules[-1].mlps.layer0.conv.in_channels == 32 + 2 + 3
    data = _batch(categories=(1, 0))
    data['inputs']['points'] = [p[:, :3] for p in data['inputs']['points']]
    for s in data['data_samples']:
        s.gt_pts_seg.pts_semantic_mask.clamp_(max=4)
    model.train()
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    assert torch.isfinite(losses['loss_sem_seg'])
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(data, False), mode='predict')
    assert set(results[0].pred_pts_seg.pts_semantic_mask.tolist()) <= {2, 3, 4}
    assert set(results[1].pred_pts_seg.pts_semantic_mask.tolist()) <= {0, 1}


def test_stacked_tensor_input_matches_list():
    model = _tiny().eval()
    data = model.data_preprocessor(_batch(), False)
    with torch.no_grad():
        from_list = model(**data, mode='tensor')
        data['inputs']['points'] = torch.stack(data['inputs']['points'])
        stacked = model(**data, mode='tensor')
    assert torch.equal(from_list, stacked)


@pytest.mark.parametrize('kwargs, message', [
    (dict(variant='pointnet'), 'variant must be one of'),
    (dict(variant='ssg', fp_channels=[(16, )]), 'one feature-propagation'),
    (dict(category_parts=[[0, 60]]), r'subset of 0\.\.49'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PointNet2PartSeg(**kwargs)


def test_bad_inputs():
    model = _tiny().eval()
    data = _batch()
    data['data_samples'][0].set_metainfo(dict(category_id=16))
    with pytest.raises(ValueError, match='category_id in 0..15'):
        model(**model.data_preprocessor(data, False), mode='predict')
    data = _batch()
    data['inputs']['points'][1] = data['inputs']['points'][1][:100]
    with pytest.raises(ValueError, match='same shape'):
        model(**model.data_preprocessor(data, False), mode='tensor')
    with pytest.raises(ValueError, match='one data sample'):
        model(
            model.data_preprocessor(_batch(), False)['inputs'], mode='tensor')


def test_modules_keep_mmdet3d_layouts():
    # Our SA module stores the parameters of mmdet3d's PointSAModuleMSG,
    # and our FP module *is* mmdet3d's PointFPModule with another forward,
    # so state dicts move between them.
    ours = PointNet2SAModule(
        num_point=16,
        radii=[0.2, 0.4],
        sample_nums=[8, 16],
        mlp_channels=[[3, 16, 32], [3, 16, 64]])
    theirs = PointSAModuleMSG(
        num_point=16,
        radii=[0.2, 0.4],
        sample_nums=[8, 16],
        mlp_channels=[[3, 16, 32], [3, 16, 64]])
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}
    assert ours.out_channels == 96
    fp = PointNet2FPModule(mlp_channels=[48, 32])
    assert isinstance(fp, PointFPModule)
    assert isinstance(
        MODELS.build(dict(type='PartSegHead', num_classes=50)), PartSegHead)


def test_sa_module_groups_like_mmcv():
    # A hand-checkable case: one centre (point 0) and radius 1.5; points
    # farther away are replaced by the first neighbour found, as mmcv does.
    sa = PointNet2SAModule(
        num_point=1, radii=[1.5], sample_nums=[4], mlp_channels=[[1, 1]])
    xyz = torch.tensor([[[0., 0, 0], [1, 0, 0], [5, 0, 0], [0, 1, 0]]])
    feats = torch.tensor([[[10., 20, 30, 40]]])
    grouped = sa._group(0, xyz, xyz[:, :1], feats)
    assert grouped.shape == (1, 4, 1, 4)
    assert grouped[0, 3, 0].tolist() == [10, 20, 40, 10]
    assert grouped[0, 0, 0].tolist() == [0, 1, 0, 0]
    new_xyz, new_feats, idx = sa(xyz, feats)
    assert new_xyz.tolist() == [[[0, 0, 0]]]
    assert new_feats.shape == (1, 1, 1) and idx.tolist() == [[0]]


FULL = 'pointnet2_ssg_8xb16-200e_shapenet-part.py'
TINY = 'pointnet2_ssg_1xb16-36e_synthetic-shapenet-part.py'


def _full_cfg(name):
    """A config by its path under configs/."""
    return Config.fromfile(osp.join(ROOT, 'configs', name))


@pytest.mark.parametrize('variant', ['ssg', 'msg'])
def test_full_gap_config_builds_and_trains_one_step(variant):
    cfg = _full_cfg(f'gap/cgap_{FULL}')
    cfg.model.variant = variant
    cfg.gap_distribution = 'uniform'  # every layer's exact count below
    assert cfg.train_dataloader.batch_size == 16
    assert cfg.train_pipeline[1].num_points == 2048
    model, wrapper, hook, runner = build_gap_training(cfg, variant)
    sp = hook.sparsifier
    assert sp.num_partitions == 3
    assert 'decode_head.conv_seg.weight' not in sp.params
    assert 'sa_modules.0.mlps.0.layer0.conv.weight' not in sp.params
    assert 'sa_modules.0.mlps.0.layer1.conv.weight' in sp.params
    by_partition = {}
    for row in sp.layer_stats():
        by_partition.setdefault(row['partition'],
                                set()).add(row['name'].split('.')[0])
    assert by_partition == {
        0: {'sa_modules'},
        1: {'fp_modules'},
        2: {'decode_head'}
    }
    assert sp.dense_partitions == {0}

    model.train()
    losses = model.train_step(_batch(num_points=512), wrapper)
    assert torch.isfinite(losses['loss_sem_seg'])
    hook.after_train_iter(runner, 0)
    for row in sp.layer_stats():
        if not row['dense']:
            keep = sp.keep_mask(row['name'])
            assert (sp.params[row['name']][~keep] == 0).all()
            assert int(keep.sum()) == keep.numel() - round(0.8 * keep.numel())


def test_dense_config_switches_gap_off():
    gap = _full_cfg(f'gap/cgap_{FULL}')
    dense = _full_cfg(f'dense/dense_{FULL}')
    assert dense.custom_hooks == []
    assert dense.optim_wrapper.type == 'OptimWrapper'
    assert 'gap_mm' not in dense.custom_imports.imports
    for key in ('model', 'train_cfg', 'param_scheduler', 'train_dataloader'):
        assert dense[key] == gap[key], key
    assert dense.optim_wrapper.optimizer == gap.optim_wrapper.optimizer


@pytest.mark.parametrize('name, hook_type, dense', [
    (f'gap/static_{TINY}', 'GaPHook', False),
    (f'gap/static-random_{TINY}', 'GaPHook', False),
    (f'gmp/gmp_{TINY}', 'GMPHook', True),
    (f'rigl/rigl_{TINY}', 'RigLHook', False),
    (f'set/set_{TINY}', 'SETHook', False),
])
def test_tiny_method_configs_train_one_step(name, hook_type, dense):
    cfg = _full_cfg(name)
    cfg.gap_distribution = 'uniform'  # every layer's exact count below
    gap = _full_cfg(f'gap/cgap_{TINY}')
    for key in ('model', 'train_cfg', 'param_scheduler', 'optim_wrapper'):
        assert cfg[key] == gap[key], key
    # 36 epochs of 9 iterations, as the tiny data has 150 training shapes
    model, wrapper, hook, runner = build_gap_training(
        cfg, name, iters_per_epoch=9)
    assert type(hook).__name__ == hook_type
    assert hook.exclude == gap.custom_hooks[0].exclude
    model.train()
    model.train_step(_batch(num_points=512), wrapper)
    hook.after_train_iter(runner, 0)
    for row in hook.sparsifier.layer_stats():
        assert row['dense'] == dense, row['name']
        if not dense:
            keep = hook.sparsifier.keep_mask(row['name'])
            assert int(keep.sum()) == keep.numel() - round(0.8 * keep.numel())


def test_tiny_dense_twin_is_the_gap_config_without_gap():
    gap = _full_cfg(f'gap/cgap_{TINY}')
    dense = _full_cfg(f'dense/dense_{TINY}')
    assert dense.custom_hooks == []
    assert dense.optim_wrapper.type == 'OptimWrapper'
    for key in ('model', 'train_cfg', 'param_scheduler', 'train_dataloader',
                'randomness'):
        assert dense.get(key) == gap.get(key), key
