# GaP (scheduled grow-and-prune) PointNet++ SSG part segmentation on
# ShapeNet part (16 categories, 50 parts), 200 epochs, 8 GPUs x 16 shapes.
#
#   tools/dist_train.sh configs/gap_pointnet2_partseg_shapenet.py 8
#   tools/dist_train.sh configs/gap_pointnet2_partseg_shapenet.py 8 \
#       --cfg-options model.variant=msg gap_sparsity=0.9
#   python tools/test.py configs/gap_pointnet2_partseg_shapenet.py \
#       work_dirs/gap_pointnet2_partseg_shapenet/epoch_200.pth
#
# The model is gap_mm's PointNet2PartSeg (mmdet3d registry): PointNet++ with
# the normals as input features and the category one-hot joining the last
# feature-propagation layer, as in the original network. Its point
# operators (FPS, ball query, grouping, three-NN interpolation) run mmcv's
# CUDA kernels on a GPU and pure torch on the CPU, so this config also runs
# (slowly) without a GPU. The result is an ordinary mmdet3d checkpoint whose
# pruned weights are 0.
_base_ = 'mmdet3d::_base_/default_runtime.py'
# gap_mm registers GaPHook, the GaP optimizer wrappers, ShapeNetPartDataset,
# PartSegMetric and the PointNet2PartSeg model.
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)

# ---------------------------------------------------------------- data
# The real benchmark: download shapenetcore_partanno_segmentation_benchmark_
# v0_normal.zip (the PointNet++ authors' release, ~674 MB, 16,881 shapes)
# and unzip it into data/, or point every split at it with
#   --cfg-options train_dataloader.dataset.data_root=/path/to/..._normal/ \
#       val_dataloader.dataset.data_root=/path/to/..._normal/ \
#       test_dataloader.dataset.data_root=/path/to/..._normal/
# tools/dataset_converters/gen_shapenet_part.py writes a procedural stand-in
# in the same layout (see configs/gap_pointnet2_partseg_tiny.py).
dataset_type = 'ShapeNetPartDataset'
data_root = 'data/shapenetcore_partanno_segmentation_benchmark_v0_normal/'
num_points = 2048

train_pipeline = [
    dict(type='LoadShapeNetPartPoints'),
    dict(type='PartPointSample', num_points=num_points),
    dict(type='NormalizePointsToUnitSphere'),
    dict(type='RandomAnisotropicScale', scale_range=(0.8, 1.25)),
    dict(type='RandomPointTranslate', shift_range=0.1),
    dict(type='PackPartSegInputs'),
]
# Evaluation on a fixed 2048-point sample of every shape (seeded by the
# shape id), as the common PyTorch re-implementations do; the TF original
# evaluates on all points of each shape.
test_pipeline = [
    dict(type='LoadShapeNetPartPoints'),
    dict(type='PartPointSample', num_points=num_points, deterministic=True),
    dict(type='NormalizePointsToUnitSphere'),
    dict(type='PackPartSegInputs'),
]
# Trained on the train split, validated on val, tested on test. (Published
# PointNet++ numbers train on train + val.)
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train_test_split/shuffled_train_file_list.json',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train_test_split/shuffled_val_file_list.json',
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train_test_split/shuffled_test_file_list.json',
        test_mode=True,
        pipeline=test_pipeline))
val_evaluator = dict(type='PartSegMetric')
test_evaluator = val_evaluator

# --------------------------------------------------------------- model
# variant='ssg' (1.41 M parameters) or 'msg' (1.74 M): the original part
# segmentation networks; sa_cfgs / fp_channels override the widths.
model = dict(
    type='PointNet2PartSeg',
    variant='ssg',
    in_channels=6,  # xyz + normals
    data_preprocessor=dict(type='Det3DDataPreprocessor'),
    decode_head=dict(
        type='PartSegHead',
        channels=128,
        num_classes=50,
        dropout_ratio=0.5,
        loss_decode=dict(
            type='mmdet.CrossEntropyLoss',
            use_sigmoid=False,
            class_weight=None,
            loss_weight=1.0)))

# ------------------------------------------------------------ schedule
# The usual PointNet++ recipe: Adam, LR 1e-3 halved every 20 epochs, 200
# epochs (the original also clips the LR at 1e-5 from epoch ~180 on).
# Batch 16 per GPU on 8 GPUs; with other batch sizes use --auto-scale-lr.
max_epochs = 200
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='StepLR',
        by_epoch=True,
        step_size=20,
        gamma=0.5,
        begin=0,
        end=max_epochs)
]
auto_scale_lr = dict(enable=False, base_batch_size=128)

# ----------------------------------------------------------------- GaP
# Target sparsity of the prunable weights and its split over layers:
# 'uniform' (every layer at gap_sparsity), 'erk' (non-uniform by layer
# shape, as in RigL) or 'global' (one magnitude threshold over all layers,
# which follows their initialisation scales at the start). The hook below
# sets neither, so it reads these variables at run time:
# `--cfg-options gap_sparsity=0.9` works with any launcher.
gap_sparsity = 0.8
gap_distribution = 'uniform'

optim_wrapper = dict(
    type='GaPOptimWrapper',
    optimizer=dict(type='Adam', lr=1e-3, weight_decay=1e-4))

# Schedule, in epochs: K = 3 partitions x T = 10 epochs x R = 3 rounds = 90
# epochs of grow-and-prune, then 110 epochs of fine-tune with all masks
# fixed. In each round, SA modules (epochs 0-9, 30-39, 60-69), FP modules
# (10-19, ...) and the head (20-29, ...) are in turn dense for 10 epochs and
# then pruned back to 80% by magnitude; the other two stay sparse. Every
# partition gets three dense turns while the LR is still high (1e-3 to
# 1.25e-4); the last prune is at epoch 90, and the fine-tune trains the
# final sparse network through the remaining LR steps. The SSG weights per
# partition: SA 0.80 M (mostly the group-all level), FP 0.58 M, head 16 k.
gap_period = 10
gap_num_rounds = 3
custom_hooks = [
    dict(
        type='GaPHook',
        # Stay dense: the first SA layer of every scale (it sees the raw
        # xyz offsets and normals; 384 weights for SSG) and the final
        # part classifier (128 x 50): tiny, and pruning them costs accuracy
        # for no saving.
        exclude=[
            r'^sa_modules\.0\.mlps\.\d+\.layer0\.', r'^decode_head\.conv_seg\.'
        ],
        # K = 3: set abstraction / feature propagation / head.
        partitions=[r'^sa_modules\.', r'^fp_modules\.', r'^decode_head\.'],
        schedule=dict(
            type='cyclic',
            period=gap_period,
            num_rounds=gap_num_rounds,
            by_epoch=True))
]

# -------------------------------------------------------------- runtime
# No `save_best`: during the grow-and-prune rounds one partition is dense,
# so the best validation score there would pick a checkpoint that is not at
# the target sparsity. The last checkpoint is the sparse result.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3),
    # mmdet3d's Det3DVisualizationHook needs image or LiDAR files; this one
    # draws the shapes' parts for `tools/test.py --show-dir`.
    visualization=dict(type='PartSegVisualizationHook'))
