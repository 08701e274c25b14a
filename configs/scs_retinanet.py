# SCS (structured continuous sparsification, a reconstruction of Yuan,
# Savarese and Maire, ICLR 2021) of RetinaNet R50-FPN on COCO, in pruning
# mode: every gate starts on, on the ImageNet-pretrained backbone of the
# dense config, whose data and 36-epoch schedule it keeps. Gated: the inner
# channels of every Bottleneck (conv1, conv2), the head towers, and the 12
# residual blocks without a downsample; lambda is steered so the structure
# frozen at 80% of the run computes half of the full FLOPs (counted for an
# 800x1344 input). Not yet trained (no GPU here).
#   tools/dist_train.sh configs/scs_retinanet.py 8
#   python tools/model_converters/slim_model.py configs/scs_retinanet.py \
#       work_dirs/scs_retinanet/epoch_36.pth work_dirs/scs_retinanet/slim
_base_ = './dense_retinanet.py'
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    type='SCSModel',
    architecture=_base_.model,
    flops_input_shape=(3, 800, 1344))
# the demo's choices (benchmarks/quality/README.md): a dense quarter first,
# the gate logits by SGD inside GaPOptimWrapper's step; gate_lr=100 was
# measured on the demo detector only
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
# must allow that
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)
