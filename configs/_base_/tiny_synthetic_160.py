# Data and training recipe shared by the small CPU detectors
# (gap_retinanet_tiny_synthetic.py, gap_faster_rcnn_tiny_synthetic.py):
# 160x160 images of the procedural shapes dataset written by
#   python tools/dataset_converters/gen_synthetic_coco.py \
#       --out data/synthetic_coco --num-train 1000 --num-val 100 --img-size 160
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)

dataset_type = 'CocoDataset'
data_root = 'data/synthetic_coco/'
metainfo = dict(
    classes=('circle', 'square', 'triangle', 'cross', 'ring', 'star'))
img_scale = (160, 160)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric='bbox',
    format_only=False)
test_evaluator = val_evaluator

# MAX_ITERS iterations: GaP rounds (K 4 x T x R 2) take 4/5 of them, the
# fine-tune with all masks fixed the last 1/5, where the LR decays.
max_iters = 2000
gap_period = 200
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=8 * gap_period,
         end=max_iters, T_max=max_iters - 8 * gap_period, eta_min=1e-5)
]
# AdamW converges from scratch far faster than SGD on this budget; GaP
# zeroes its moments at pruned positions like SGD's momentum.
optim_wrapper = dict(
    type='GaPOptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=500,
        max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
# Fixed seed: the README's figures come from this config and data.
randomness = dict(seed=0)
