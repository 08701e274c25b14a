# SCS (structured continuous sparsification, a reconstruction of Yuan, Savarese
# and Maire, ICLR 2021) of the tiny PointNet++ part segmentation, with a gate
# on every output channel of the shared MLPs' inner layers (each MLP's last
# layer feeds the max-pool, the next level's grouping and the feature
# propagation, and stays ungated); no residual blocks. A dense quarter, lambda
# steered to half of the FLOPs (counted for one cloud of 512 points), the
# structure frozen at 80% of the run, the gate logits by SGD inside
# GaPOptimWrapper's step. The run is 324 iterations, so lambda starts at 0.1
# and moves every iteration, and the structure is landed on the target at the
# freeze (land_on_target: the gates of highest logit, as many as the target
# allows, and each layer's top channel).
#   python tools/train.py \
#       configs/scs/scs_pointnet2_ssg_1xb16-36e_synthetic-shapenet-part.py
_base_ = [
    '../_base_/models/pointnet2_ssg_synthetic-shapenet-part.py',
    '../_base_/datasets/synthetic-shapenet-part.py',
    '../_base_/schedules/adam-step-36e.py',
    '../_base_/default_runtime_3d_tiny.py',
    '../_base_/sparsity/pointnet2_ssg_synthetic-shapenet-part.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    type='SCSModel',
    architecture=_base_.model,
    flops_input_shape=(512, 6),
    lambda_init=0.1)
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='SCSHook',
        begin=0.25,
        freeze=0.8,
        flops_target=0.5,
        lambda_interval=1,
        gate_lr=100.0,
        land_on_target=True)
]
# in the warm-up and after the freeze the gate logits get no gradient: DDP
# (tools/dist_train.sh) must allow that
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)
