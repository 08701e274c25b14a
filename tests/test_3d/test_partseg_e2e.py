# Copyright (c) gap_mm contributors. All rights reserved.
"""GaP PointNet++ part segmentation end to end, on generated ShapeNet data.

Through the standard launchers only: two-process (gloo) training with
tools/dist_train.sh on the tiny C-GaP PointNet++ config, tools/test.py
with PartSegMetric, and the published checkpoint evaluated by mmdet3d's own
Runner in a process whose config holds no GaP hook or wrapper.
"""
import importlib.util
import json
import os.path as osp
import sys

import pytest
import torch

from gap_mm.testing.e2e import (checkpoint_masks, free_port, load_checkpoint,
                                logged_metrics, run_tool)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CONFIG = osp.join(
    ROOT, 'configs', 'gap',
    'cgap_pointnet2_ssg_1xb16-36e_synthetic-shapenet-part.py')
GENERATOR = osp.join(ROOT, 'tools', 'dataset_converters',
                     'gen_shapenet_part.py')
SPARSITY = 0.8
MAX_EPOCHS = 4
# Test shapes per category of the generated data (see _generate).
TEST_SHAPES = dict(Airplane=1, Chair=1, Lamp=1, Mug=2, Table=3)
# Prunable layers of the tiny model: SA 2 + 3 + 2 convs (the first conv is
# excluded), FP 2 + 2 + 2, head 1 (the classifier is excluded).
NUM_PRUNABLE = 14


def _generate(out):
    spec = importlib.util.spec_from_file_location('gen_shapenet_part',
                                                  GENERATOR)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    # Unequal categories, so that the class mean of the mIoUs differs from
    # the instance mean: 3 shapes (train/val/test 1/1/1) of Airplane, Chair
    # and Lamp, 8 Mugs (5/1/2) and 13 Tables (9/1/3).
    return gen.generate(
        str(out),
        shapes_per_category=3,
        num_points=512,
        seed=0,
        category_shapes=dict(Mug=8, Table=13))


def _config(tmp_path, data_root):
    cfg = tmp_path / 'gap_partseg_e2e.py'
    cfg.write_text(f'''
_base_ = {TINY_CONFIG!r}
custom_imports = dict(
    imports=['gap_mm', 'gap_mm.testing.hooks'],
    allow_failed_imports=False)
data_root = {str(data_root) + '/'!r}
train_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root))
test_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root))
train_cfg = dict(max_epochs={MAX_EPOCHS}, val_interval={MAX_EPOCHS})
param_scheduler = []
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={MAX_EPOCHS}))
randomness = dict(seed=0)
custom_hooks = [
    dict(type='GaPHook', sparsity={SPARSITY}, distribution='uniform',
         exclude=[r'^sa_modules\\.0\\.mlps\\.\\d+\\.layer0\\.',
                  r'^decode_head\\.conv_seg\\.'],
         partitions=[r'^sa_modules\\.', r'^fp_modules\\.',
                     r'^decode_head\\.'],
         schedule=dict(type='cyclic', period=1, num_rounds=1,
                       by_epoch=True)),
    dict(type='DumpRankMasksHook'),
]
''')
    # What a user without gap_mm's training engine would write: the same
    # model and data, no GaPHook, a plain optimizer wrapper, and only the
    # task registrations (gap_mm3d) imported.
    plain = tmp_path / 'plain_partseg.py'
    plain.write_text(f'''
_base_ = {str(cfg)!r}
custom_imports = dict(imports=['gap_mm3d'], allow_failed_imports=False)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='Adam', lr=1e-3))
custom_hooks = []
''')
    return str(cfg), str(plain)


def _run(args, tmp_path, check=True, **env):
    return run_tool(args, ROOT, [tmp_path], check=check, timeout=300, **env)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """`tools/dist_train.sh <tiny config> 2` on generated shapes."""
    tmp_path = tmp_path_factory.mktemp('partseg')
    data_root = tmp_path / 'shapenet_part'
    counts = _generate(data_root)
    assert counts == dict(train=17, val=5, test=8)
    cfg, plain = _config(tmp_path, data_root)
    work = tmp_path / 'dist'
    _run(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir',
          str(work)],
         tmp_path,
         PORT=str(free_port()))
    return tmp_path, cfg, plain, work


@pytest.fixture(scope='module')
def evaluated(trained):
    """tools/test.py, publish_model.py and a plain mmdet3d Runner."""
    tmp_path, cfg, plain, work = trained
    ckpt = work / f'epoch_{MAX_EPOCHS}.pth'
    _run([
        sys.executable, 'tools/test.py', cfg,
        str(ckpt), '--work-dir',
        str(tmp_path / 'test'), '--out',
        str(tmp_path / 'predictions.pkl'), '--show-dir', 'vis'
    ], tmp_path)
    ours = logged_metrics(tmp_path / 'test', 'part_seg/instance_miou')

    published = tmp_path / 'published.pth'
    _run([
        sys.executable, 'tools/model_converters/publish_model.py',
        str(ckpt),
        str(published)
    ], tmp_path)
    script = f'''
import json
import sys

import torch

# Plain torch loads the published file, before anything of gap_mm exists.
state = torch.load({str(published)!r}, map_location='cpu',
                   weights_only=True)
assert set(state) == {{'state_dict', 'meta'}}, set(state)
assert not [m for m in sys.modules if m.split('.')[0] == 'gap_mm']

from mmengine.config import Config
from mmengine.runner import Runner

cfg = Config.fromfile({plain!r})  # imports gap_mm3d
assert cfg.custom_hooks == []
assert cfg.optim_wrapper.type == 'OptimWrapper'
cfg.work_dir = {str(tmp_path / 'plain')!r}
cfg.load_from = {str(published)!r}
runner = Runner.from_cfg(cfg)
metrics = runner.test()
hooks = sorted(type(h).__name__ for h in runner.hooks)
print('PLAIN', json.dumps(dict(
    metrics=metrics, hooks=hooks,
    optim_wrapper=str(runner.optim_wrapper),
    model=type(runner.model).__module__ + '.' + type(runner.model).__name__,
    gap_modules=sorted(m for m in sys.modules
                       if m.split('.')[0] in ('gap_mm', 'gap_mm3d')))))
'''
    proc = _run([sys.executable, '-c', script], tmp_path)
    line = next(x for x in proc.stdout.splitlines() if x.startswith('PLAIN'))
    return ours, json.loads(line[len('PLAIN'):])


def test_dist_train_exact_sparsity_and_identical_masks(trained):
    _, _, _, work = trained
    ckpt = load_checkpoint(work / f'epoch_{MAX_EPOCHS}.pth')
    masks = checkpoint_masks(ckpt)
    assert len(masks) == NUM_PRUNABLE
    assert {n.split('.')[0]
            for n in masks} == {'sa_modules', 'fp_modules', 'decode_head'}
    for name, keep in masks.items():
        n = keep.numel()
        assert int(keep.sum()) == n - round(SPARSITY * n), name
        weight = ckpt['state_dict'][name]
        assert (weight[~keep] == 0).all(), name
    rank0 = torch.load(work / 'masks_rank0.pth', weights_only=True)
    rank1 = torch.load(work / 'masks_rank1.pth', weights_only=True)
    assert set(rank0) == set(masks)
    for name in masks:
        assert torch.equal(rank0[name], rank1[name]), name
        assert torch.equal(rank0[name], masks[name]), name


def _shape_iou(pred, gt, parts):
    """Mean IoU over ``parts``; a part in neither counts as 1."""
    ious = []
    for part in parts:
        inter = int(((pred == part) & (gt == part)).sum())
        union = int(((pred == part) | (gt == part)).sum())
        ious.append(1.0 if union == 0 else inter / union)
    return sum(ious) / len(ious)


def test_test_py_reports_part_seg_miou(evaluated, trained):
    # The mIoUs test.py logs are those of the predictions it dumped with
    # --out, recomputed here from the definition. The categories have
    # different numbers of test shapes, so the class mIoU (the mean of the
    # category mIoUs) is not the instance mIoU (the mean over shapes).
    import pickle
    from gap_mm3d.datasets import (SHAPENET_PART_CATEGORIES,
                                   SHAPENET_PART_CATEGORY_PARTS)
    ours, _ = evaluated
    with open(trained[0] / 'predictions.pkl', 'rb') as f:
        samples = pickle.load(f)
    assert len(samples) == sum(TEST_SHAPES.values())
    by_category = {}
    for sample in samples:
        category = SHAPENET_PART_CATEGORIES[int(sample['category_id'])]
        pred = sample['pred_pts_seg']['pts_semantic_mask']
        gt = sample['gt_pts_seg']['pts_semantic_mask']
        assert pred.shape == gt.shape == (512, )
        by_category.setdefault(category, []).append(
            _shape_iou(pred, gt, SHAPENET_PART_CATEGORY_PARTS[category]))
    assert {c: len(v) for c, v in by_category.items()} == TEST_SHAPES
    ious = [v for values in by_category.values() for v in values]
    instance = sum(ious) / len(ious)
    per_class = [sum(v) / len(v) for v in by_category.values()]
    class_miou = sum(per_class) / len(per_class)
    assert ours['part_seg/instance_miou'] == pytest.approx(instance, abs=1e-9)
    assert ours['part_seg/class_miou'] == pytest.approx(class_miou, abs=1e-9)
    difference = abs(ours['part_seg/class_miou'] - instance)
    assert difference > 1e-6, (class_miou, instance)
    for category, values in by_category.items():
        assert ours[f'part_seg/{category}_miou'] == pytest.approx(
            sum(values) / len(values), abs=1e-9), category


def test_published_checkpoint_in_plain_mmdet3d_runner(evaluated):
    ours, plain = evaluated
    metrics = plain['metrics']
    for key in ('part_seg/instance_miou', 'part_seg/class_miou'):
        assert metrics[key] == pytest.approx(ours[key], abs=1e-9), key
    # No GaP machinery was built: no GaPHook, no GaP optimizer wrapper.
    assert not [h for h in plain['hooks'] if 'GaP' in h], plain['hooks']
    assert 'GaP' not in plain['optim_wrapper']
    assert plain['model'] == 'gap_mm3d.models.pointnet2_part_seg.' \
        'PointNet2PartSeg'


def test_plain_runner_does_not_import_the_sparsity_engine(evaluated):
    # gap_mm3d (dataset, metric, model) never imports gap_mm, whose
    # __init__ would load the engine.
    _, plain = evaluated
    loaded = plain['gap_modules']
    assert 'gap_mm3d.models' in loaded
    assert 'gap_mm3d.evaluation' in loaded
    assert not [m for m in loaded if m.split('.')[0] == 'gap_mm'], loaded


def test_test_py_show_dir_draws_every_shape(evaluated, trained):
    from PIL import Image
    pngs = sorted((trained[0] / 'test').glob('*/vis/*.png'))
    # one per test shape: <synset>_<shape_id>.png
    assert len(pngs) == sum(TEST_SHAPES.values()), pngs
    for png in pngs:
        synset, shape_id = png.stem.split('_', 1)
        assert len(synset) == 8 and synset.isdigit(), png
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.size[0] > 300 and image.size[1] > 300
            # not a blank canvas
            assert len(image.convert('RGB').getcolors(1 << 20)) > 10
