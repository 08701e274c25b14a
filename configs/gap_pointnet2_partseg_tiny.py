# Small GaP PointNet++ part segmentation for the CPU, on the procedural
# ShapeNet-part-style data (5 categories, 200 shapes), in about a minute on
# two cores:
#   python tools/dataset_converters/gen_shapenet_part.py \
#       --out data/shapenet_part_synthetic --shapes-per-category 40
#   python tools/train.py configs/gap_pointnet2_partseg_tiny.py
#
# The model, head, optimizer and GaP partitions are those of the full
# config; this file shrinks the clouds (512 points), the widths (SSG at
# about 1/4 width, 0.19 M parameters) and the schedule (epochs of 9
# iterations at batch 16).
_base_ = './gap_pointnet2_partseg_shapenet.py'

data_root = 'data/shapenet_part_synthetic/'
num_points = 512

# Restated, not inherited: the base's pipelines captured its num_points.
train_pipeline = [
    dict(type='LoadShapeNetPartPoints'),
    dict(type='PartPointSample', num_points=num_points),
    dict(type='NormalizePointsToUnitSphere'),
    dict(type='RandomAnisotropicScale', scale_range=(0.8, 1.25)),
    dict(type='RandomPointTranslate', shift_range=0.1),
    dict(type='PackPartSegInputs'),
]
test_pipeline = [
    dict(type='LoadShapeNetPartPoints'),
    dict(type='PartPointSample', num_points=num_points, deterministic=True),
    dict(type='NormalizePointsToUnitSphere'),
    dict(type='PackPartSegInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))

model = dict(
    sa_cfgs=[
        dict(
            num_point=128,
            radii=(0.2, ),
            sample_nums=(16, ),
            mlp_channels=((32, 32, 64), )),
        dict(
            num_point=32,
            radii=(0.4, ),
            sample_nums=(16, ),
            mlp_channels=((64, 64, 128), )),
        dict(num_point=None, mlp_channels=((128, 256), )),
    ],
    fp_channels=[(128, 128), (128, 64), (64, 64)],
    decode_head=dict(channels=64))

# 36 epochs of 9 iterations: K 3 x T 6 epochs x R 1 round = 18 epochs of
# grow-and-prune, then 18 epochs of fine-tune with all masks fixed. Twice
# the full config's LR (batch 16 on one process), halved every 12 epochs.
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(
        type='StepLR',
        by_epoch=True,
        step_size=12,
        gamma=0.5,
        begin=0,
        end=max_epochs)
]
optim_wrapper = dict(optimizer=dict(lr=2e-3))
gap_period = 6
gap_num_rounds = 1
# Restated: custom_hooks is a list, replaced rather than merged, and it
# captured the base's gap_period.
custom_hooks = [
    dict(
        type='GaPHook',
        exclude=[
            r'^sa_modules\.0\.mlps\.\d+\.layer0\.', r'^decode_head\.conv_seg\.'
        ],
        partitions=[r'^sa_modules\.', r'^fp_modules\.', r'^decode_head\.'],
        schedule=dict(
            type='cyclic',
            period=gap_period,
            num_rounds=gap_num_rounds,
            by_epoch=True))
]
default_hooks = dict(
    logger=dict(interval=9),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=9)
