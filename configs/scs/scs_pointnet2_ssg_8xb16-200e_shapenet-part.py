# SCS (structured continuous sparsification, a reconstruction of Yuan, Savarese
# and Maire, ICLR 2021) of PointNet++ SSG part segmentation on ShapeNet part:
# the model, data and 200 epochs of the other methods, with gates on the shared
# MLPs' inner layers (see
# configs/scs/scs_pointnet2_ssg_1xb16-36e_synthetic-shapenet-part.py for which
# layers and why), half of the FLOPs of a 2048-point cloud as the target, and
# the structure landed on the target at the freeze.
#   tools/dist_train.sh \
#       configs/scs/scs_pointnet2_ssg_8xb16-200e_shapenet-part.py 8
_base_ = [
    '../_base_/models/pointnet2_ssg.py', '../_base_/datasets/shapenet-part.py',
    '../_base_/schedules/adam-step-200e.py', '../_base_/default_runtime_3d.py',
    '../_base_/sparsity/pointnet2_ssg_shapenet-part.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    type='SCSModel',
    architecture=_base_.model,
    flops_input_shape=(2048, 6),
    lambda_init=0.01)
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='SCSHook',
        begin=0.25,
        freeze=0.8,
        flops_target=0.5,
        gate_lr=100.0,
        land_on_target=True)
]
# keep the best validation checkpoint, as the dense baseline does
default_hooks = dict(
    checkpoint=dict(save_best='part_seg/instance_miou', rule='greater'))
# in the warm-up and after the freeze the gate logits get no gradient: DDP
# (tools/dist_train.sh) must allow that
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)
