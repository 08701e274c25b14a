# PointNet++ SSG part segmentation on ShapeNet part trained dense: the model,
# data and 200-epoch schedule of the sparse methods.
#   tools/dist_train.sh \
#       configs/dense/dense_pointnet2_ssg_8xb16-200e_shapenet-part.py 8
_base_ = [
    '../_base_/models/pointnet2_ssg.py', '../_base_/datasets/shapenet-part.py',
    '../_base_/schedules/adam-step-200e.py', '../_base_/default_runtime_3d.py',
    '../_base_/sparsity/pointnet2_ssg_shapenet-part.py'
]
# The dataset, metric and model come from gap_mm3d, without the sparsity
# engine.
custom_imports = dict(imports=['gap_mm3d'], allow_failed_imports=False)
custom_hooks = []
# A dense model may keep its best validation checkpoint.
default_hooks = dict(
    checkpoint=dict(save_best='part_seg/instance_miou', rule='greater'))
