# C-GaP of the tiny PointNet++ part segmentation on the procedural
# ShapeNet-part-style data, in about a minute on two cores: K = 3 partitions,
# each dense for 6 epochs in one round (18 epochs), then 18 epochs of fine-tune
# with all masks fixed.
#   python tools/dataset_converters/gen_shapenet_part.py \
#       --out data/shapenet_part_synthetic --shapes-per-category 40
#   python tools/train.py \
#       configs/gap/cgap_pointnet2_ssg_1xb16-36e_synthetic-shapenet-part.py
_base_ = [
    '../_base_/models/pointnet2_ssg_synthetic-shapenet-part.py',
    '../_base_/datasets/synthetic-shapenet-part.py',
    '../_base_/schedules/adam-step-36e.py',
    '../_base_/default_runtime_3d_tiny.py',
    '../_base_/sparsity/pointnet2_ssg_synthetic-shapenet-part.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='GaPHook',
        exclude=_base_.gap_exclude,
        # K = 3: set abstraction / feature propagation / head.
        partitions=[r'^sa_modules\.', r'^fp_modules\.', r'^decode_head\.'],
        schedule=dict(
            type='cyclic',
            period=_base_.gap_period,
            num_rounds=_base_.gap_num_rounds,
            by_epoch=True))
]
