# Copyright (c) gap_mm authors. All rights reserved.
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

GEN_PATH = osp.join(
    osp.dirname(__file__), '..', '..', 'tools', 'dataset_converters',
    'gen_synthetic_coco.py')
NUM_TRAIN, NUM_VAL, IMG_SIZE, SEED = 12, 4, 128, 3


@pytest.fixture(scope='module')
def gen():
    spec = importlib.util.spec_from_file_location('gen_synthetic_coco',
                                                  GEN_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generate(gen, out_dir, **kwargs):
    args = dict(
        num_train=NUM_TRAIN, num_val=NUM_VAL, seed=SEED, img_size=IMG_SIZE)
    args.update(kwargs)
    return gen.generate_dataset(str(out_dir), **args)


@pytest.fixture(scope='module')
def data_root(gen, tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_coco')
    _generate(gen, root)
    return str(root)


def _read_tree(root):
    """All files below ``root`` as {relative path: bytes}."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = osp.join(folder, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, root)] = f.read()
    return files


@pytest.mark.parametrize('split, num_images', [('train2017', NUM_TRAIN),
                                               ('val2017', NUM_VAL)])
def test_pycocotools_loads(gen, data_root, split, num_images):
    coco_api = pytest.importorskip('pycocotools.coco')
    mask_api = pytest.importorskip('pycocotools.mask')
    from PIL import Image
    coco = coco_api.COCO(
        osp.join(data_root, 'annotations', f'instances_{split}.json'))
    cats = coco.loadCats(coco.getCatIds())
    assert [(c['id'], c['name'])
            for c in cats] == list(enumerate(gen.SHAPES, start=1))
    assert len(coco.getImgIds()) == num_images
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        with Image.open(osp.join(data_root, split, info['file_name'])) as img:
            assert img.size == (info['width'], info['height'])
            assert img.size == (IMG_SIZE, IMG_SIZE)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        assert 2 <= len(anns) <= 6
        for ann in anns:
            x, y, w, h = ann['bbox']
            assert w > 0 and h > 0
            assert 0 <= x and x + w <= info['width']
            assert 0 <= y and y + h <= info['height']
            assert ann['iscrowd'] == 0
            assert ann['category_id'] in coco.getCatIds()
            # The box and area describe the visible mask exactly.
            mask = coco.annToMask(ann)
            assert mask.sum() == ann['area'] <= w * h
            rle = mask_api.encode(np.asfortranarray(mask))
            np.testing.assert_allclose(mask_api.toBbox(rle), ann['bbox'])


def test_gt_as_detections_scores_map_1(data_root):
    coco_api = pytest.importorskip('pycocotools.coco')
    from pycocotools.cocoeval import COCOeval
    coco = coco_api.COCO(
        osp.join(data_root, 'annotations', 'instances_val2017.json'))
    dets = [
        dict(
            image_id=a['image_id'],
            category_id=a['category_id'],
            bbox=a['bbox'],
            score=1.0) for a in coco.dataset['annotations']
    ]
    evaluator = COCOeval(coco, coco.loadRes(dets), 'bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_objects_are_partially_occluded_within_limit(gen):
    visible = []
    for index in range(40):
        rng = np.random.default_rng([0, 0, index])
        _, objects = gen.generate_image(rng, img_size=IMG_SIZE)
        visible += [obj['visible'] for obj in objects]
    visible = np.array(visible)
    assert (visible < 1).any()  # some occlusion happens
    assert visible.min() >= 0.5  # never beyond --max-occlusion


def test_deterministic(gen, data_root, tmp_path):
    _generate(gen, tmp_path / 'again')
    assert _read_tree(tmp_path / 'again') == _read_tree(data_root)

    _generate(gen, tmp_path / 'other_seed', seed=SEED + 1)
    other = _read_tree(tmp_path / 'other_seed')
    assert other.keys() == _read_tree(data_root).keys()
    assert other != _read_tree(data_root)

    # Each image depends on (seed, split, index) only.
    _generate(gen, tmp_path / 'more_val', num_val=NUM_VAL + 2)
    ann = osp.join('annotations', 'instances_train2017.json')
    assert _read_tree(tmp_path / 'more_val')[ann] == _read_tree(data_root)[ann]


def test_cli_classes_and_format(tmp_path):
    out = tmp_path / 'subset'
    subprocess.run([
        sys.executable, GEN_PATH, '--out',
        str(out), '--num-train', '2', '--num-val', '1', '--img-size', '96',
        '--seed', '1', '--classes', 'ring,star', 'circle', '--format', 'png'
    ],
                   check=True,
                   capture_output=True,
                   timeout=60)
    with open(out / 'annotations' / 'instances_val2017.json') as f:
        coco = json.load(f)
    assert coco['categories'] == [
        dict(id=1, name='ring', supercategory='shape'),
        dict(id=2, name='star', supercategory='shape'),
        dict(id=3, name='circle', supercategory='shape'),
    ]
    assert coco['images'][0]['file_name'] == '000000000001.png'
    assert (out / 'val2017' / '000000000001.png').is_file()
    assert {a['category_id'] for a in coco['annotations']} <= {1, 2, 3}

    proc = subprocess.run(
        [sys.executable, GEN_PATH, '--out',
         str(out), '--classes', 'octagon'],
        capture_output=True,
        text=True,
        timeout=60)
    assert proc.returncode != 0 and 'octagon' in proc.stderr


@pytest.mark.parametrize('shape', ['pentagon', 'hexagon', 'semicircle',
                                   'arrow'])
def test_extra_shapes_fill_their_circle(gen, shape):
    size, centre = 40.0, (48.0, 48.0)
    mask = gen.draw_shape_mask(shape, centre, size, 0.0, 96)
    ys, xs = np.nonzero(mask)
    # Inside the circumscribed circle around the given centre, and filling
    # a good part of its box (no degenerate outline).
    assert np.hypot(xs - centre[0] + 0.5, ys - centre[1] + 0.5).max() \
        <= size / 2 + 1.5
    box_w, box_h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert mask.sum() >= 0.3 * box_w * box_h


def test_extra_shapes_differ_and_stay_out_of_the_default_classes(gen):
    assert gen.SHAPES == ('circle', 'square', 'triangle', 'cross', 'ring',
                          'star')
    assert gen.ALL_SHAPES[:6] == gen.SHAPES
    masks = {
        shape: gen.draw_shape_mask(shape, (48.0, 48.0), 40.0, 0.3, 96)
        for shape in gen.ALL_SHAPES
    }
    for a in gen.ALL_SHAPES:
        for b in gen.ALL_SHAPES:
            if a < b:
                assert (masks[a] ^ masks[b]).sum() > 20, (a, b)
    meta = gen.coco_metainfo(gen.ALL_SHAPES)
    assert len(set(meta['palette'])) == len(gen.ALL_SHAPES)


def test_mmdet_coco_dataset_loads(gen, data_root):
    pytest.importorskip('mmdet')
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs

    with open(osp.join(data_root, 'annotations',
                       'instances_train2017.json')) as f:
        coco = json.load(f)
    dataset = CocoDataset(
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        metainfo=gen.coco_metainfo(),
        filter_cfg=dict(filter_empty_gt=True, min_size=1),
        pipeline=[
            LoadImageFromFile(),
            LoadAnnotations(with_bbox=True),
            PackDetInputs()
        ])
    assert dataset.metainfo['classes'] == gen.SHAPES
    assert len(dataset) == NUM_TRAIN
    num_boxes = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        inputs, data_sample = sample['inputs'], sample['data_samples']
        assert tuple(inputs.shape) == (3, IMG_SIZE, IMG_SIZE)
        gt = data_sample.gt_instances
        assert len(gt.bboxes) == len(gt.labels) > 0
        assert int(gt.labels.min()) >= 0
        assert int(gt.labels.max()) < len(gen.SHAPES)
        num_boxes += len(gt.bboxes)
    assert num_boxes == len(coco['annotations'])
