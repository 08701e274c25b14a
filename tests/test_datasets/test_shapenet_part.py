# Copyright (c) gap_mm authors. All rights reserved.
import importlib.util
import json
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS, TRANSFORMS
from mmdet3d.structures import Det3DDataSample
from mmengine.registry import DefaultScope

from gap_mm3d.datasets import (
    SHAPENET_PART_CATEGORIES, SHAPENET_PART_CATEGORY_PARTS,
    LoadShapeNetPartPoints, NormalizePointsToUnitSphere, PackPartSegInputs,
    PartPointSample, RandomAnisotropicScale, RandomPointJitter,
    RandomPointTranslate, ShapeNetPartDataset)

GEN_PATH = osp.join(
    osp.dirname(__file__), '..', '..', 'tools', 'dataset_converters',
    'gen_shapenet_part.py')
TRAIN = 'train_test_split/shuffled_train_file_list.json'
MUG, TABLE = '03797390', '04379243'


@pytest.fixture(scope='module')
def generated_root(tmp_path_factory):
    spec = importlib.util.spec_from_file_location('gen_shapenet_part',
                                                  GEN_PATH)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    root = str(tmp_path_factory.mktemp('shapenet') / 'v0_normal')
    gen.generate(root, shapes_per_category=4, num_points=40, seed=0)
    return root


def _row(label, xyz=(0.1, 0.2, 0.3)):
    return ' '.join(f'{v:.6f}' for v in (*xyz, 0.0, 1.0, 0.0)) + f' {label}'


def make_tree(root, shapes, splits=None, category_lines=None):
    """Write a hand-made tree.

    ``shapes`` maps (synset, shape_id) to the file's text. Each split file
    is written one entry per line (``indent=1``), so entry i is on line i+2.
    """
    os.makedirs(osp.join(root, 'train_test_split'), exist_ok=True)
    if category_lines is None:
        category_lines = ['Mug\t03797390', 'Table\t04379243']
    with open(osp.join(root, 'synsetoffset2category.txt'), 'w') as f:
        f.write('\n'.join(category_lines) + '\n')
    for (synset, shape_id), text in shapes.items():
        os.makedirs(osp.join(root, synset), exist_ok=True)
        with open(osp.join(root, synset, f'{shape_id}.txt'), 'w') as f:
            f.write(text)
    if splits is None:
        splits = dict(train=[f'shape_data/{s}/{i}' for s, i in shapes])
    for split, entries in splits.items():
        path = osp.join(root, 'train_test_split',
                        f'shuffled_{split}_file_list.json')
        with open(path, 'w') as f:
            json.dump(entries, f, indent=1)
    return root


def good_mug(n=5):
    return '\n'.join(_row(36 + i % 2) for i in range(n)) + '\n'


# ---------------------------------------------------------------- dataset
def test_reads_generated_tree(generated_root):
    dataset = ShapeNetPartDataset(data_root=generated_root, ann_file=TRAIN)
    with open(osp.join(generated_root, TRAIN)) as f:
        entries = json.load(f)
    assert len(dataset) == len(entries) == 10
    meta = dataset.metainfo
    assert len(meta['classes']) == 50
    assert meta['categories'] == SHAPENET_PART_CATEGORIES
    assert len(meta['categories']) == 16
    assert meta['category_parts']['Airplane'] == (0, 1, 2, 3)
    assert meta['category_parts']['Table'] == (47, 48, 49)
    assert meta['category_parts']['Motorbike'] == (30, 31, 32, 33, 34, 35)
    assert meta['classes'][36] == 'Mug_handle'
    assert meta['selected_categories'] == ('Airplane', 'Chair', 'Lamp', 'Mug',
                                           'Table')
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        category = meta['categories'][info['category_id']]
        assert category == info['category']
        assert meta['synsets'][category] == info['synset']
        assert info['part_ids'] == list(meta['category_parts'][category])
        assert f'shape_data/{info["synset"]}/{info["shape_id"]}' in entries
        assert dataset.get_cat_ids(idx) == [info['category_id']]

    with DefaultScope.overwrite_default_scope('mmdet3d'):
        built = DATASETS.build(
            dict(
                type='ShapeNetPartDataset',
                data_root=generated_root,
                ann_file='train_test_split/shuffled_test_file_list.json',
                check_files=True))
    assert len(built) == 5


@pytest.mark.parametrize('scope', [None, 'mmdet3d', 'mmengine', 'mmdet'])
def test_pipeline_output(generated_root, scope):
    # The transforms are mmdet3d's whatever default scope is current.
    with DefaultScope.overwrite_default_scope(scope):
        dataset = ShapeNetPartDataset(
            data_root=generated_root,
            ann_file=TRAIN,
            pipeline=[
                dict(type='LoadShapeNetPartPoints'),
                dict(type='PartPointSample', num_points=64),
                dict(type='NormalizePointsToUnitSphere'),
                dict(type='RandomAnisotropicScale'),
                dict(type='RandomPointTranslate'),
                dict(type='RandomPointJitter'),
                dict(type='PackPartSegInputs'),
            ])
    for idx in (0, len(dataset) - 1):
        out = dataset[idx]
        points = out['inputs']['points']
        sample = out['data_samples']
        assert isinstance(points, torch.Tensor)
        assert points.dtype == torch.float32 and points.shape == (64, 6)
        assert isinstance(sample, Det3DDataSample)
        mask = sample.gt_pts_seg.pts_semantic_mask
        assert mask.dtype == torch.long and mask.shape == (64, )
        info = dataset.get_data_info(idx)
        assert sample.category_id == info['category_id']
        assert sample.metainfo['category'] == info['category']
        parts = SHAPENET_PART_CATEGORY_PARTS[info['category']]
        assert set(mask.tolist()) <= set(parts)


def test_categories_subset(generated_root):
    dataset = ShapeNetPartDataset(
        data_root=generated_root, ann_file=TRAIN, categories=['Table', 'Mug'])
    assert len(dataset) == 4
    ids = {dataset.get_data_info(i)['category_id'] for i in range(4)}
    # the category ids stay the standard ones
    assert ids == {
        SHAPENET_PART_CATEGORIES.index('Mug'),
        SHAPENET_PART_CATEGORIES.index('Table')
    } == {11, 15}
    assert dataset.metainfo['selected_categories'] == ('Mug', 'Table')
    assert len(dataset.metainfo['categories']) == 16

    with pytest.raises(ValueError, match='unknown categories'):
        ShapeNetPartDataset(data_root=generated_root, categories=['Sofa'])
    with pytest.raises(ValueError, match='not listed in .*synsetoffset'):
        ShapeNetPartDataset(data_root=generated_root, categories=['Bag'])
    with pytest.raises(ValueError, match='cannot be changed'):
        ShapeNetPartDataset(
            data_root=generated_root, metainfo=dict(classes=('a', 'b')))


def _expect_file_line(exc_info, path, line):
    message = str(exc_info.value)
    assert f'{path}:{line}:' in message, message


@pytest.mark.parametrize(
    'rows, line, pattern',
    [
        # wrong column count on line 3
        ([_row(36), _row(37), '0.1 0.2 0.3 0.0 1.0 0.0'], 3, 'columns'),
        # non-numeric value on line 2
        ([_row(36), '0.1 abc 0.3 0.0 1.0 0.0 37',
          _row(37)], 2, 'non-numeric'),
        # a Table part in a Mug file on line 4 (after a blank line 3)
        ([_row(36), _row(37), '', _row(47)], 4, 'outside the valid part'),
        # a part id beyond 49
        ([_row(50)], 1, 'outside the valid part'),
        ([_row('36.5')], 1, 'not an integer'),
        ([_row('nan')], 1, 'non-finite'),
    ])
def test_malformed_shape_file(tmp_path, rows, line, pattern):
    root = make_tree(str(tmp_path), {(MUG, 'bad'): '\n'.join(rows) + '\n'})
    path = osp.join(root, MUG, 'bad.txt')
    # lazily, in the pipeline
    dataset = ShapeNetPartDataset(
        data_root=root, pipeline=[dict(type='LoadShapeNetPartPoints')])
    with pytest.raises(ValueError, match=pattern) as exc_info:
        dataset[0]
    _expect_file_line(exc_info, path, line)
    # eagerly, at initialisation
    with pytest.raises(ValueError, match=pattern) as exc_info:
        ShapeNetPartDataset(data_root=root, check_files=True)
    _expect_file_line(exc_info, path, line)


def test_float_labels_accepted(tmp_path):
    # the real benchmark writes labels as '37.000000'
    text = _row('36.000000') + '\n' + _row('37.000000') + '\n'
    root = make_tree(str(tmp_path), {(MUG, 'ok'): text})
    dataset = ShapeNetPartDataset(
        data_root=root, pipeline=[dict(type='LoadShapeNetPartPoints')])
    out = dataset[0]
    assert out['points'].shape == (2, 6)
    assert out['pts_semantic_mask'].tolist() == [36, 37]


def test_split_missing_file(tmp_path):
    entries = [f'shape_data/{MUG}/a', f'shape_data/{MUG}/missing']
    root = make_tree(
        str(tmp_path), {(MUG, 'a'): good_mug()}, splits=dict(train=entries))
    with pytest.raises(FileNotFoundError, match='missing.txt') as exc_info:
        ShapeNetPartDataset(data_root=root)
    # indent=1: '[' on line 1, entry #1 on line 3
    _expect_file_line(exc_info, osp.join(root, TRAIN), 3)


def test_split_unknown_synset(tmp_path):
    entries = [f'shape_data/{MUG}/a', 'shape_data/02691156/plane']
    root = make_tree(
        str(tmp_path), {(MUG, 'a'): good_mug()}, splits=dict(train=entries))
    with pytest.raises(ValueError, match='02691156') as exc_info:
        ShapeNetPartDataset(data_root=root)
    _expect_file_line(exc_info, osp.join(root, TRAIN), 3)


@pytest.mark.parametrize('lines, line, pattern', [
    (['Mug\t03797390', 'Tabel\t04379243'], 2, 'unknown category'),
    (['Mug\t03797390', 'Table 04379243 x'], 2, 'expected'),
    (['Mug\t04379243'], 1, 'has synset 03797390'),
])
def test_malformed_category_file(tmp_path, lines, line, pattern):
    root = make_tree(
        str(tmp_path), {(MUG, 'a'): good_mug()}, category_lines=lines)
    with pytest.raises(ValueError, match=pattern) as exc_info:
        ShapeNetPartDataset(data_root=root)
    _expect_file_line(exc_info, osp.join(root, 'synsetoffset2category.txt'),
                      line)


# ------------------------------------------------------------- transforms
def _results(num=100, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(num, 3)) * [1.0, 2.0, 0.5] + [3.0, -1.0, 2.0]
    normals = rng.normal(size=(num, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    points = np.concatenate([xyz, normals], axis=1).astype(np.float32)
    # the label encodes the row, so that rows and labels can be matched
    return dict(
        points=points,
        pts_semantic_mask=np.arange(num, dtype=np.int64),
        category_id=11,
        shape_id='abc')


@pytest.mark.parametrize('num', [100, 10])
def test_point_sample(num):
    results = _results(num)
    original = results['points'].copy()
    out = PartPointSample(num_points=32)(results)
    assert out['points'].shape == (32, 6)
    np.testing.assert_array_equal(out['points'],
                                  original[out['pts_semantic_mask']])
    rows = out['pts_semantic_mask']
    if num >= 32:
        assert len(set(rows.tolist())) == 32  # without replacement
    else:
        assert set(rows.tolist()) == set(range(num))  # every point kept
    det = PartPointSample(num_points=32, deterministic=True)
    first = det(_results(num))['pts_semantic_mask']
    np.random.seed(123)
    np.testing.assert_array_equal(first,
                                  det(_results(num))['pts_semantic_mask'])


def test_normalize_unit_sphere():
    results = _results()
    normals = results['points'][:, 3:].copy()
    out = NormalizePointsToUnitSphere()(results)
    xyz = out['points'][:, :3]
    np.testing.assert_allclose(xyz.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(xyz, axis=1).max(), 1, rtol=1e-5)
    np.testing.assert_array_equal(out['points'][:, 3:], normals)


def test_anisotropic_scale_normals():
    # points on the plane n.x = 1 with unit normal n
    rng = np.random.default_rng(1)
    n = np.array([1.0, 2.0, -0.5])
    n /= np.linalg.norm(n)
    basis = np.linalg.svd(n[None])[2][1:]  # two directions within the plane
    xyz = n + rng.normal(size=(50, 2)) @ basis
    points = np.concatenate([xyz, np.tile(n, (50, 1))], 1).astype(np.float32)
    transform = RandomAnisotropicScale(scale_range=(0.5, 2.0))
    out = transform(dict(points=points))
    scale = out['pcd_scale_factor']
    assert np.all((scale >= 0.5) & (scale <= 2.0))
    new_xyz, new_n = out['points'][:, :3], out['points'][:, 3:]
    np.testing.assert_allclose(new_xyz, xyz * scale, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(new_n, axis=1), 1, atol=1e-5)
    # the transformed normal is still perpendicular to the scaled plane
    tangents = basis * scale
    np.testing.assert_allclose(new_n @ tangents.T, 0, atol=1e-5)
    # and still points to the same side
    assert np.all(new_n @ n > 0)


def test_translate_and_jitter():
    results = _results()
    original = results['points'].copy()
    out = RandomPointTranslate(shift_range=0.1)(results)
    shift = out['points'][:, :3] - original[:, :3]
    np.testing.assert_allclose(
        shift, shift[:1].repeat(len(shift), 0), atol=1e-5)
    assert np.all(np.abs(shift) <= 0.1 + 1e-6)
    np.testing.assert_array_equal(out['points'][:, 3:], original[:, 3:])

    before = out['points'].copy()
    out = RandomPointJitter(sigma=0.01, clip=0.05)(out)
    delta = out['points'][:, :3] - before[:, :3]
    assert np.all(np.abs(delta) <= 0.05 + 1e-6) and np.any(delta != 0)
    np.testing.assert_array_equal(out['points'][:, 3:], before[:, 3:])


def test_pack_and_registry():
    pipeline = [
        TRANSFORMS.build(dict(type=name))
        for name in ('PartPointSample', 'NormalizePointsToUnitSphere',
                     'RandomAnisotropicScale', 'RandomPointTranslate',
                     'RandomPointJitter', 'PackPartSegInputs')
    ]
    assert isinstance(pipeline[-1], PackPartSegInputs)
    assert TRANSFORMS.get('LoadShapeNetPartPoints') is LoadShapeNetPartPoints
    results = _results(3000)
    for transform in pipeline:
        results = transform(results)
    points = results['inputs']['points']
    sample = results['data_samples']
    assert points.shape == (2048, 6) and points.dtype == torch.float32
    np.testing.assert_allclose(points[:, 3:].norm(dim=1), 1, atol=1e-5)
    assert sample.gt_pts_seg.pts_semantic_mask.shape == (2048, )
    assert sample.category_id == 11 and sample.shape_id == 'abc'
    with pytest.raises(KeyError, match='category_id'):
        PackPartSegInputs()(dict(points=np.zeros((3, 6), np.float32)))


def test_transform_input_checks():
    with pytest.raises(ValueError, match='at least 6'):
        RandomAnisotropicScale()(dict(points=np.zeros((4, 3), np.float32)))
    with pytest.raises(TypeError, match='np.ndarray'):
        NormalizePointsToUnitSphere()(dict(points=[[0, 0, 0]]))
    assert re.search('num_points=7', repr(PartPointSample(7)))
