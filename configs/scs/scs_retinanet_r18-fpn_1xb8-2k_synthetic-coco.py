# SCS, structured continuous sparsification (a reconstruction of Yuan,
# Savarese and Maire, ICLR 2021), of the demo RetinaNet, on the dense
# baseline's model, data, optimizer, LR schedule, 2000 iterations and seed,
# with a gate on every channel of the channel groups (residual blocks'
# inner convs, the head towers) and on every residual block without a
# downsample. The first 25% of the run trains dense; then the gates are
# sampled and the FLOPs weight lambda (from 0.01) is steered so that the
# frozen structure computes half of the full model's FLOPs; beta rises
# 1 -> 200 until the freeze at 80% of the run, then the structure is trained
# as it is. The gate logits are trained by plain SGD (lr 100, inside
# GaPOptimWrapper's step), the weights by AdamW. Export the smaller model:
#   python tools/train.py \
#       configs/scs/scs_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py
#   python tools/model_converters/slim_model.py \
#       configs/scs/scs_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py \
#       work_dirs/scs_retinanet_r18-fpn_1xb8-2k_synthetic-coco/iter_2000.pth \
#       work_dirs/scs_retinanet_r18-fpn_1xb8-2k_synthetic-coco/slim \
#       --input-shape 3 160 160
_base_ = [
    '../_base_/models/retinanet_r18-fpn_synthetic-coco.py',
    '../_base_/datasets/synthetic-coco.py',
    '../_base_/schedules/adamw-cosine-2k.py', '../_base_/default_runtime.py',
    '../_base_/sparsity/retinanet_r18-fpn_synthetic-coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    type='SCSModel',
    architecture=_base_.model,
    flops_input_shape=(3, 160, 160),
    init_logit=1.0,
    lambda_init=0.01)
# GaPOptimWrapper runs the gates' SGD inside its step; AdamW never sees them
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='SCSHook',
        begin=0.25,
        freeze=0.8,
        flops_target=0.5,
        lambda_rate=0.1,
        gate_lr=100.0)
]
# in the warm-up and after the freeze the gate logits get no gradient: DDP
# (tools/dist_train.sh) must allow that
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)
