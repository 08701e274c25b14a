# Copyright (c) gap_mm contributors. All rights reserved.
"""GaP detection end to end on real COCO images (../shared/data/coco_tiny).

Through the standard launchers only: two-process training with
tools/dist_train.sh, tools/test.py with CocoMetric, a published checkpoint
evaluated by plain mmdet in a process that never imports gap_mm, resume
after a kill, and the errors a user meets first.
"""
import os.path as osp
import pickle
import sys
from pathlib import Path

import pytest
import torch

from gap_mm.testing.e2e import (checkpoint_masks, free_port, load_checkpoint,
                                logged_metrics, run_tool)
from gap_mm.testing.hooks import KILL_ENV

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
COCO_TINY = osp.abspath(osp.join(ROOT, '..', 'shared', 'data', 'coco_tiny'))
DEMO_GAP = osp.join(ROOT, 'configs', 'gap',
                    'cgap_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py')
DEMO_PGAP = osp.join(ROOT, 'configs', 'pgap',
                     'pgap_retinanet_r18-fpn_2xb8-2k_synthetic-coco.py')
pytestmark = pytest.mark.skipif(
    not osp.isdir(COCO_TINY),
    reason=f'real COCO test data not found at {COCO_TINY} (../shared/data '
    'is beside the project checkout only on the project machines)')

SPARSITY = 0.8
MAX_ITERS = 10


def _coco_tiny_data(train_extra: str = '') -> str:
    """The data part of a config that trains and evaluates the demo
    detector on the real images of coco_tiny (80 classes), batch 2;
    ``train_extra`` goes into ``train_dataloader``."""
    from mmdet.datasets import CocoDataset
    classes = tuple(CocoDataset.METAINFO['classes'])
    return f'''
data_root = {COCO_TINY + '/'!r}
metainfo = dict(classes={classes!r})
# After a few iterations no score passes the usual 0.05; keep every box so
# that CocoMetric has predictions to score.
model = dict(bbox_head=dict(num_classes=80), test_cfg=dict(score_thr=0.0))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False, {train_extra}
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/')))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
'''


def _config(tmp_path):
    data = _coco_tiny_data()
    cfg = tmp_path / 'gap_coco_tiny.py'
    cfg.write_text(f'''
_base_ = {DEMO_GAP!r}
custom_imports = dict(imports=['gap_mm', 'gap_mm.testing.hooks'],
                      allow_failed_imports=False)
{data}
train_cfg = dict(max_iters={MAX_ITERS}, val_interval=1000)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=5, max_keep_ckpts=3))
randomness = dict(seed=0)
custom_hooks = [
    dict(type='GaPHook', sparsity={SPARSITY}, distribution='uniform',
         exclude=[r'^backbone\\.conv1\\.',
                  r'^bbox_head\\.retina_(cls|reg)\\.'],
         partitions=2, schedule=dict(type='cyclic', period=3, num_rounds=1)),
    dict(type='DumpRankMasksHook'),
    dict(type='KillAfterIterHook', hard=True),
]
''')
    return str(cfg)


def _run(args, tmp_path, check=True, **env):
    return run_tool(args, ROOT, [tmp_path], check=check, **env)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """`tools/dist_train.sh <config> 2` on real COCO images."""
    tmp_path = tmp_path_factory.mktemp('coco_tiny')
    cfg = _config(tmp_path)
    work = tmp_path / 'dist'
    _run(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir',
          str(work)],
         tmp_path,
         PORT=str(free_port()))
    return tmp_path, cfg, work


def test_dist_train_exact_sparsity_and_identical_masks(trained):
    _, _, work = trained
    ckpt = load_checkpoint(work / f'iter_{MAX_ITERS}.pth')
    masks = checkpoint_masks(ckpt)
    assert len(masks) == 29  # every conv but the stem and the two outputs
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


def test_test_py_then_plain_mmdet_without_gap_mm(trained):
    tmp_path, cfg, work = trained
    ckpt = work / f'iter_{MAX_ITERS}.pth'
    out = tmp_path / 'results.pkl'
    _run([
        sys.executable, 'tools/test.py', cfg,
        str(ckpt), '--work-dir',
        str(tmp_path / 'test'), '--out',
        str(out), '--show-dir', 'vis'
    ], tmp_path)
    assert out.stat().st_size > 0
    # --show-dir: mmdet's DetVisualizationHook paints every val image.
    painted = sorted(p.name for p in (tmp_path / 'test').glob('*/vis/*.jpg'))
    assert painted == sorted(
        p.name for p in (Path(COCO_TINY) / 'val2017').glob('*.jpg'))
    ours = logged_metrics(tmp_path / 'test', 'coco/bbox_mAP')

    published = tmp_path / 'published.pth'
    plain_out = tmp_path / 'plain_results.pkl'
    _run([
        sys.executable, 'tools/model_converters/publish_model.py',
        str(ckpt),
        str(published)
    ], tmp_path)
    script = f'''
import sys
from mmengine.config import Config
from mmengine.runner import Runner
cfg = Config.fromfile({cfg!r}, import_custom_modules=False)
runner = Runner(
    model=cfg.model, work_dir={str(tmp_path / 'plain')!r},
    test_dataloader=cfg.test_dataloader,
    test_evaluator=[cfg.test_evaluator,
                    dict(type='DumpDetResults',
                         out_file_path={str(plain_out)!r})],
    test_cfg=cfg.test_cfg, load_from={str(published)!r},
    default_scope='mmdet', env_cfg=dict(dist_cfg=dict(backend='gloo')))
metrics = runner.test()
assert not any(m == 'gap_mm' or m.startswith('gap_mm.') for m in sys.modules)
print('PLAIN_MAP', metrics['coco/bbox_mAP'], metrics['coco/bbox_mAP_50'])
'''
    proc = _run([sys.executable, '-c', script], tmp_path)
    line = next(x for x in proc.stdout.splitlines()
                if x.startswith('PLAIN_MAP'))
    plain_map, plain_map50 = map(float, line.split()[1:])
    assert plain_map == pytest.approx(ours['coco/bbox_mAP'], abs=1e-9)
    assert plain_map50 == pytest.approx(ours['coco/bbox_mAP_50'], abs=1e-9)
    # After 10 iterations the mAP is ~0 on both sides, so compare the
    # detections themselves, box for box.
    with open(out, 'rb') as f:
        ours_pred = pickle.load(f)
    with open(plain_out, 'rb') as f:
        plain_pred = pickle.load(f)
    assert [r['img_id'] for r in ours_pred] == \
        [r['img_id'] for r in plain_pred]
    assert len(ours_pred) == 6  # the val split of coco_tiny
    for a, b in zip(ours_pred, plain_pred):
        a, b = a['pred_instances'], b['pred_instances']
        assert len(a['scores']) == 50  # max_per_img, score_thr=0
        assert torch.equal(a['labels'], b['labels'])
        torch.testing.assert_close(a['bboxes'], b['bboxes'], rtol=0, atol=1e-4)
        torch.testing.assert_close(a['scores'], b['scores'], rtol=0, atol=1e-6)


def test_resume_after_kill_matches_uninterrupted(trained):
    tmp_path, cfg, _ = trained
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    _run([sys.executable, 'tools/train.py', cfg, '--work-dir',
          str(straight)], tmp_path)
    proc = _run(
        [sys.executable, 'tools/train.py', cfg, '--work-dir',
         str(killed)],
        tmp_path,
        check=False,
        **{KILL_ENV: '5'})
    assert proc.returncode == 137
    assert not (killed / f'iter_{MAX_ITERS}.pth').exists()
    _run([
        sys.executable, 'tools/train.py', cfg, '--work-dir',
        str(killed), '--resume'
    ], tmp_path)
    a = load_checkpoint(straight / f'iter_{MAX_ITERS}.pth')
    b = load_checkpoint(killed / f'iter_{MAX_ITERS}.pth')
    ma, mb = checkpoint_masks(a), checkpoint_masks(b)
    assert set(ma) == set(mb)
    for name in ma:
        assert torch.equal(ma[name], mb[name]), name
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key


@pytest.mark.parametrize('tool, options, message', [
    ('train', ['train_dataloader.dataset.data_root=/no/such/coco/'
               ], "data_root '/no/such/coco/' does not exist"),
    ('train', ['train_dataloader.dataset.ann_file=annotations/missing.json'
               ], "annotation file .*missing.json' does not exist"),
    ('train', ['custom_hooks.0.sparsty=0.9'
               ], "GaPHook has no option 'sparsty'. Did you mean 'sparsity'"),
    ('train', ["custom_hooks.0.partitions=['^backbone','^roi_head']"
               ], r"partition 1 '\^roi_head' matches no prunable layer"),
    ('train', ['gap_sparsty=0.9'
               ], "gap_sparsty: .* Did you mean 'gap_sparsity'"),
    ('test', ['custom_hooks.0.sparsty=0.9'
              ], "GaPHook has no option 'sparsty'. Did you mean 'sparsity'"),
    ('test', ["custom_hooks.0.partitions=['^backbone','^roi_head']"
              ], r"partition 1 '\^roi_head' matches no prunable layer"),
    ('test', ['test_dataloader.dataset.data_root=/no/such/coco/'
              ], "data_root '/no/such/coco/' does not exist"),
])
def test_bad_input_gets_a_clear_error(trained, tool, options, message):
    import re
    tmp_path, cfg, work = trained
    args = [sys.executable, f'tools/{tool}.py', cfg]
    if tool == 'test':
        args.append(str(work / f'iter_{MAX_ITERS}.pth'))
    proc = _run(
        args + [
            '--work-dir',
            str(tmp_path / f'bad_{tool}'), '--cfg-options', *options
        ],
        tmp_path,
        check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    assert re.search(message, proc.stderr), proc.stderr[-2000:]


def test_sparsity_report_on_the_trained_detector(trained):
    import json
    tmp_path, cfg, work = trained
    ckpt = work / f'iter_{MAX_ITERS}.pth'
    out = tmp_path / 'report.json'
    _run([
        sys.executable, 'tools/analysis_tools/sparsity_report.py', cfg,
        str(ckpt), '--out-json',
        str(out), '--flops-shape', '3', '64', '64'
    ], tmp_path)
    with open(out) as f:
        report = json.load(f)['reports'][0]
    # unstructured masks leave no filter all zero: FLOPs as dense
    flops = report['flops']
    assert flops['input_shape'] == [3, 64, 64] and flops['total'] > 0
    assert flops['zero_filters'] == 0
    assert flops['without_zero_filters'] == flops['total']
    masks = checkpoint_masks(load_checkpoint(ckpt))
    rows = {r['name']: r for r in report['layers']}
    # One row per layer the config's GaPHook prunes, counted from the
    # weights themselves: every kept weight trained away from 0.
    assert set(rows) == set(masks)
    for name, keep in masks.items():
        assert rows[name]['nonzero'] == int(keep.sum()), name
        assert rows[name]['numel'] == keep.numel()
    numel = sum(k.numel() for k in masks.values())
    kept = sum(int(k.sum()) for k in masks.values())
    assert report['prunable']['numel'] == numel
    assert report['prunable']['nonzero'] == kept
    assert report['partition_source'].startswith('checkpoint')
    assert sorted({r['partition'] for r in rows.values()}) == [0, 1]


def test_parallel_gap_through_dist_train(tmp_path):
    """configs/pgap/pgap_retinanet_r18-fpn_2xb8-2k_synthetic-coco.py on
    real images with tools/dist_train.sh and 2 processes (one rank group
    each): both ranks end with the same masks and the checkpoint
    evaluates."""
    # 2 rounds of 2 iterations at batch 2 per rank group
    data = _coco_tiny_data('sampler=dict(group_samples=2 * 2 * 2),')
    cfg = tmp_path / 'pgap_coco_tiny.py'
    cfg.write_text(f'''
_base_ = {DEMO_PGAP!r}
custom_imports = dict(imports=['gap_mm', 'gap_mm.testing.hooks'],
                      allow_failed_imports=False)
{data}
train_cfg = dict(max_iters=6, val_interval=1000)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2, max_keep_ckpts=1))
custom_hooks = [
    dict(_base_.custom_hooks[0],
         schedule=dict(type='parallel', period=2, num_rounds=2)),
    dict(type='DumpRankMasksHook'),
]
''')
    work = tmp_path / 'pgap'
    proc = _run([
        'bash', 'tools/dist_train.sh',
        str(cfg), '2', '--work-dir',
        str(work)
    ],
                tmp_path,
                PORT=str(free_port()))
    log = proc.stdout + proc.stderr
    assert 'combined the 2 rank groups' in log
    m0 = torch.load(work / 'masks_rank0.pth', weights_only=True)
    m1 = torch.load(work / 'masks_rank1.pth', weights_only=True)
    assert set(m0) == set(m1)
    for name in m0:
        assert m0[name] is not None, name  # all sparse in the fine-tune
        assert torch.equal(m0[name], m1[name]), name
    _run([
        sys.executable, 'tools/test.py',
        str(cfg),
        str(work / 'iter_6.pth'), '--work-dir',
        str(tmp_path / 'pgap_test')
    ], tmp_path)
    assert 'coco/bbox_mAP' in logged_metrics(
        str(tmp_path / 'pgap_test'), 'coco/bbox_mAP')
