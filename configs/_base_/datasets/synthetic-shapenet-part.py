# The procedural ShapeNet-part-style data (5 categories, 200 shapes; 150 for
# training, 9 iterations an epoch at batch 16) at 512 points a shape, in
# the layout of shapenet-part.py, written by
#   python tools/dataset_converters/gen_shapenet_part.py \
#       --out data/shapenet_part_synthetic --shapes-per-category 40
# One process loads it (no workers).
dataset_type = 'ShapeNetPartDataset'
data_root = 'data/shapenet_part_synthetic/'
num_points = 512

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
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train_test_split/shuffled_train_file_list.json',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
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
    num_workers=0,
    persistent_workers=False,
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
