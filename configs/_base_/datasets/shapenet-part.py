# ShapeNet part segmentation (16 categories, 50 parts), 2048 points a shape.
# Download shapenetcore_partanno_segmentation_benchmark_v0_normal.zip (the
# PointNet++ authors' release, ~674 MB, 16,881 shapes) and unzip it into
# data/, or point every split at it with
#   --cfg-options train_dataloader.dataset.data_root=/path/to/..._normal/ \
#       val_dataloader.dataset.data_root=/path/to/..._normal/ \
#       test_dataloader.dataset.data_root=/path/to/..._normal/
# tools/dataset_converters/gen_shapenet_part.py writes a procedural stand-in
# in the same layout (see synthetic-shapenet-part.py).
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
