# Copyright (c) gap_mm authors. All rights reserved.
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest

from gap_mm3d.datasets import (SHAPENET_PART_CATEGORY_PARTS,
                               SHAPENET_PART_SYNSETS, load_shapenet_part_txt)

GEN_PATH = osp.join(
    osp.dirname(__file__), '..', '..', 'tools', 'dataset_converters',
    'gen_shapenet_part.py')


@pytest.fixture(scope='module')
def gen():
    spec = importlib.util.spec_from_file_location('gen_shapenet_part',
                                                  GEN_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read_tree(root):
    """All files below ``root`` as {relative path: bytes}."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = osp.join(folder, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, root)] = f.read()
    return files


def test_tables_match_dataset(gen):
    for category, synset in gen.SYNSETS.items():
        assert SHAPENET_PART_SYNSETS[category] == synset
        assert sorted(gen.PARTS[category].values()) == list(
            SHAPENET_PART_CATEGORY_PARTS[category])


def test_deterministic(gen, tmp_path):
    kwargs = dict(shapes_per_category=3, num_points=50)
    gen.generate(str(tmp_path / 'a'), seed=1, **kwargs)
    gen.generate(str(tmp_path / 'b'), seed=1, **kwargs)
    gen.generate(str(tmp_path / 'c'), seed=2, **kwargs)
    tree_a = _read_tree(tmp_path / 'a')
    assert tree_a == _read_tree(tmp_path / 'b')
    tree_c = _read_tree(tmp_path / 'c')
    assert tree_a != tree_c
    # one category alone gives the same shapes as in the full run
    gen.generate(str(tmp_path / 'd'), seed=1, categories=['Mug'], **kwargs)
    tree_d = _read_tree(tmp_path / 'd')
    mug_files = [k for k in tree_d if k.startswith('03797390')]
    assert len(mug_files) == 3
    for key in mug_files:
        assert tree_d[key] == tree_a[key]


def test_layout_labels_and_normals(gen, tmp_path):
    root = str(tmp_path / 'data')
    counts = gen.generate(root, shapes_per_category=5, num_points=64, seed=0)
    assert counts == dict(train=15, val=5, test=5)
    with open(osp.join(root, 'synsetoffset2category.txt')) as f:
        lines = [line.split('\t') for line in f.read().splitlines()]
    assert [c for c, _ in lines] == list(gen.CATEGORIES)

    seen = set()
    for split in ('train', 'val', 'test'):
        path = osp.join(root, 'train_test_split',
                        f'shuffled_{split}_file_list.json')
        with open(path) as f:
            entries = json.load(f)
        assert not seen & set(entries)
        seen |= set(entries)
    assert len(seen) == 25

    synset_to_category = {s: c for c, s in gen.SYNSETS.items()}
    absent_parts = 0
    for entry in seen:
        _, synset, shape_id = entry.split('/')
        category = synset_to_category[synset]
        parts = SHAPENET_PART_CATEGORY_PARTS[category]
        points, labels = load_shapenet_part_txt(
            osp.join(root, synset, f'{shape_id}.txt'), parts)
        assert points.shape == (64, 6)
        assert np.abs(points[:, :3]).max() <= 0.5 + 1e-5
        np.testing.assert_allclose(
            np.linalg.norm(points[:, 3:], axis=1), 1, atol=1e-4)
        assert set(labels.tolist()) <= set(parts)
        absent_parts += len(set(parts) - set(labels.tolist()))
    # optional parts (arms, supports, engines, canopies) are sometimes left
    # out, which exercises the metric's absent-part rule
    assert absent_parts > 0


def test_cli(gen, tmp_path, capsys):
    out = str(tmp_path / 'cli')
    argv = [
        '--out', out, '--shapes-per-category', '2', '--points', '16', '--seed',
        '3', '--categories', 'Table', 'Mug'
    ]
    gen.main(argv)
    assert 'wrote 4 shapes' in capsys.readouterr().out
    assert sorted(os.listdir(out)) == [
        '03797390', '04379243', 'synsetoffset2category.txt', 'train_test_split'
    ]
    with pytest.raises(FileExistsError, match='--overwrite'):
        gen.main(argv)
    gen.main(argv + ['--overwrite'])
    with pytest.raises(SystemExit):
        gen.main(['--out', out, '--categories', 'Bag'])


def _split_counts(root):
    """{split: {synset: number of shapes}} of a generated dataset."""
    counts = {}
    for split in ('train', 'val', 'test'):
        path = osp.join(root, 'train_test_split',
                        f'shuffled_{split}_file_list.json')
        with open(path) as f:
            synsets = [entry.split('/')[1] for entry in json.load(f)]
        counts[split] = {s: synsets.count(s) for s in sorted(set(synsets))}
    return counts


def test_category_shapes(gen, tmp_path):
    kwargs = dict(num_points=20, seed=1, shapes_per_category=3)
    full = str(tmp_path / 'full')
    counts = gen.generate(full, **kwargs)
    mixed = str(tmp_path / 'mixed')
    counts = gen.generate(
        mixed, category_shapes=dict(Mug=8, Table=13), **kwargs)
    # 3 shapes: 1/1/1 per split; 8: 5/1/2; 13: 9/1/3
    assert counts == dict(train=17, val=5, test=8)
    mug, table = gen.SYNSETS['Mug'], gen.SYNSETS['Table']
    split = _split_counts(mixed)
    expected = {gen.SYNSETS[c]: 1 for c in ('Airplane', 'Chair', 'Lamp')}
    expected.update({mug: 2, table: 3})
    assert split['test'] == expected
    assert split['train'][mug] == 5 and split['train'][table] == 9
    # shape i of a category does not depend on the counts
    tree_full, tree_mixed = _read_tree(full), _read_tree(mixed)
    assert len([k for k in tree_mixed if k.startswith(table)]) == 13
    for key, data in tree_full.items():
        if key.startswith((mug, table, gen.SYNSETS['Lamp'])):
            assert tree_mixed[key] == data, key

    with pytest.raises(ValueError, match=r"\['Bag'\], which are not"):
        gen.generate(str(tmp_path / 'e1'), category_shapes=dict(Bag=2))
    with pytest.raises(ValueError, match=r"\['Table'\], which are not"):
        gen.generate(
            str(tmp_path / 'e2'),
            categories=['Mug'],
            category_shapes=dict(Table=2))
    with pytest.raises(
            ValueError, match=r"integers >= 1, but got \{'Mug': 0\}"):
        gen.generate(str(tmp_path / 'e3'), category_shapes=dict(Mug=0))


def test_category_shapes_cli(gen, tmp_path, capsys):
    out = str(tmp_path / 'cli')
    gen.main([
        '--out', out, '--shapes-per-category', '2', '--points', '16',
        '--category-shapes', 'Mug=4', 'Table=6', '--categories', 'Mug',
        'Table', 'Lamp'
    ])
    assert 'wrote 12 shapes' in capsys.readouterr().out
    totals = {}
    for per_synset in _split_counts(out).values():
        for synset, num in per_synset.items():
            totals[synset] = totals.get(synset, 0) + num
    assert totals == {
        gen.SYNSETS['Lamp']: 2,
        gen.SYNSETS['Mug']: 4,
        gen.SYNSETS['Table']: 6
    }
    for bad in ('Mug', 'Mug=0', 'Mug=x', 'Bag=3'):
        with pytest.raises(SystemExit):
            gen.main(['--out', out, '--category-shapes', bad])
        assert repr(bad) in capsys.readouterr().err, bad
    with pytest.raises(SystemExit):
        gen.main(['--out', out, '--category-shapes', 'Mug=2', 'Mug=3'])
    assert "['Mug'] more than once" in capsys.readouterr().err


def test_primitive_normals(gen):
    rng = np.random.default_rng(0)
    # cylinder of radius 0.3 around y: normal = radial direction
    pts, nrm = gen.Frustum(0.3, 0.3, 0.0, 1.0).sample(200, rng)
    np.testing.assert_allclose(np.hypot(pts[:, 0], pts[:, 2]), 0.3)
    np.testing.assert_allclose(
        nrm[:, [0, 2]], pts[:, [0, 2]] / 0.3, atol=1e-12)
    assert np.all(nrm[:, 1] == 0)
    # cone with apex (0, 1, 0) and base radius 1 at y = 0: normals are
    # perpendicular to the slant line to the apex and point outwards
    pts, nrm = gen.Frustum(1.0, 0.0, 0.0, 1.0).sample(200, rng)
    to_apex = np.array([0, 1, 0]) - pts
    np.testing.assert_allclose((to_apex * nrm).sum(1), 0, atol=1e-9)
    assert np.all((pts[:, [0, 2]] * nrm[:, [0, 2]]).sum(1) > 0)
    # the same cone placed along x by the frame Y_TO_X
    pts, nrm = gen.Frustum(
        1.0, 0.0, 0.0, 1.0, rotation=gen.Y_TO_X,
        center=(1, 2, 3)).sample(200, rng)
    to_apex = np.array([2, 2, 3]) - pts
    np.testing.assert_allclose((to_apex * nrm).sum(1), 0, atol=1e-9)
    # torus arc: normal = direction from the tube's centre circle
    pts, nrm = gen.TorusArc(0.5, 0.1, -np.pi / 2, np.pi / 2).sample(200, rng)
    phi = np.arctan2(pts[:, 1], pts[:, 0])
    ring = np.stack([0.5 * np.cos(phi), 0.5 * np.sin(phi), 0 * phi], 1)
    np.testing.assert_allclose(pts - ring, 0.1 * nrm, atol=1e-9)
    assert np.all(pts[:, 0] >= -1e-9)
    # rotated box: in the local frame every point lies on the face its
    # normal names
    rotation = gen.rot_y(0.3) @ gen.rot_x(0.2)
    box = gen.Box((0.2, 0.4, 0.6), center=(1, 0, 0), rotation=rotation)
    pts, nrm = box.sample(300, rng)
    local_p = (pts - box.center) @ rotation
    local_n = nrm @ rotation
    axis = np.abs(local_n).argmax(1)
    rows = np.arange(300)
    np.testing.assert_allclose(local_p[rows, axis],
                               local_n[rows, axis] * box.size[axis] / 2)
    assert np.all(np.abs(local_p) <= box.size / 2 + 1e-12)
    # uniform-by-area sampling of a frustum: half the area lies below the
    # height where the cumulative area reaches one half
    pts, _ = gen.Frustum(1.0, 0.0, 0.0, 1.0).sample(20000, rng)
    assert abs(np.mean(pts[:, 1] < 1 - np.sqrt(0.5)) - 0.5) < 0.02


def test_allocate(gen):
    counts = gen.allocate([1.0, 2.0, 1e-6], 10)
    assert counts.sum() == 10 and counts.min() >= 1
    assert gen.allocate([1.0, 1.0], 1).sum() == 1
