# C-GaP (cyclic scheduled grow-and-prune) of PointNet++ SSG part segmentation
# on ShapeNet part, 200 epochs, 8 GPUs x 16 shapes. In each of 3 rounds the SA
# modules (epochs 0-9, 30-39, 60-69), FP modules (10-19, ...) and the head
# (20-29, ...) are in turn dense for 10 epochs and then pruned back by
# magnitude; the other two stay sparse. The last prune is at epoch 90, and the
# fine-tune trains the final sparse network through the remaining LR steps. The
# SSG weights per partition: SA 0.80 M (mostly the group-all level), FP 0.58 M,
# head 16 k.
#   tools/dist_train.sh \
#       configs/gap/cgap_pointnet2_ssg_8xb16-200e_shapenet-part.py 8
#   tools/dist_train.sh \
#       configs/gap/cgap_pointnet2_ssg_8xb16-200e_shapenet-part.py 8 \
#       --cfg-options model.variant=msg gap_sparsity=0.9
#   python tools/test.py \
#       configs/gap/cgap_pointnet2_ssg_8xb16-200e_shapenet-part.py \
#       work_dirs/cgap_pointnet2_ssg_8xb16-200e_shapenet-part/epoch_200.pth
# The result is an ordinary mmdet3d checkpoint whose pruned weights are 0.
_base_ = [
    '../_base_/models/pointnet2_ssg.py', '../_base_/datasets/shapenet-part.py',
    '../_base_/schedules/adam-step-200e.py', '../_base_/default_runtime_3d.py',
    '../_base_/sparsity/pointnet2_ssg_shapenet-part.py'
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
