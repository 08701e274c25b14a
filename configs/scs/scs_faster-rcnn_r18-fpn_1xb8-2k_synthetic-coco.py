# SCS of the demo detector's two-stage twin, Faster R-CNN (same model,
# data, optimizer, LR schedule and 2000 iterations), with the choices of
# scs_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py: gates on the backbone
# blocks' inner channels, the RoI head's shared FCs and the residual blocks
# without a downsample; half of the FLOPs (RoI head counted on the RPN's
# 100 test proposals) as the target.
_base_ = [
    '../_base_/models/faster-rcnn_r18-fpn_synthetic-coco.py',
    '../_base_/datasets/synthetic-coco.py',
    '../_base_/schedules/adamw-cosine-2k.py', '../_base_/default_runtime.py',
    '../_base_/sparsity/faster-rcnn_r18-fpn_synthetic-coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    type='SCSModel',
    architecture=_base_.model,
    flops_input_shape=(3, 160, 160),
    lambda_init=0.01)
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='SCSHook',
        begin=0.25,
        freeze=0.8,
        flops_target=0.5,
        gate_lr=100.0)
]
# in the warm-up and after the freeze the gate logits get no gradient: DDP
# (tools/dist_train.sh) must allow that
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)
