# The tiny PointNet++ part segmentation trained dense: the model, data,
# optimizer, LR schedule, epochs and seed of the sparse methods.
#   python tools/train.py \
#       configs/dense/dense_pointnet2_ssg_1xb16-36e_synthetic-shapenet-part.py
_base_ = [
    '../_base_/models/pointnet2_ssg_synthetic-shapenet-part.py',
    '../_base_/datasets/synthetic-shapenet-part.py',
    '../_base_/schedules/adam-step-36e.py',
    '../_base_/default_runtime_3d_tiny.py',
    '../_base_/sparsity/pointnet2_ssg_synthetic-shapenet-part.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
custom_hooks = []
