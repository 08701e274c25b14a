# SCS of the small Faster R-CNN of gap_faster_rcnn_tiny_synthetic.py (same
# model, data, optimizer, LR schedule and 2000 iterations, without GaP),
# with the choices of scs_retinanet_tiny_synthetic.py: gates on the
# backbone blocks' inner channels, the RoI head's shared FCs and the
# residual blocks without a downsample; half of the FLOPs (RoI head counted
# on the RPN's 100 test proposals) as the target.
#   python tools/train.py configs/scs_faster_rcnn_tiny_synthetic.py
_base_ = './gap_faster_rcnn_tiny_synthetic.py'
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
