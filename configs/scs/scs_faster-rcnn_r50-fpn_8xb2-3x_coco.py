# SCS (structured continuous sparsification, a reconstruction of Yuan, Savarese
# and Maire, ICLR 2021) of Faster R-CNN R50-FPN on COCO, in pruning mode: every
# gate starts on, on the ImageNet-pretrained backbone, with the data and
# 36-epoch schedule of the other methods. Gated: the inner channels of every
# Bottleneck (conv1, conv2), the RoI head's two shared fully-connected layers,
# and the 12 residual blocks without a downsample (the RPN head is shared
# across FPN levels and stays ungated); lambda is steered so the structure
# frozen at 80% of the run computes half of the full FLOPs (counted for an
# 800x1344 input with the RoI head on the RPN's 1000 test proposals). A dense
# quarter first, the gate logits by SGD inside GaPOptimWrapper's step.
#   tools/dist_train.sh configs/scs/scs_faster-rcnn_r50-fpn_8xb2-3x_coco.py 8
#   python tools/model_converters/slim_model.py \
#       configs/scs/scs_faster-rcnn_r50-fpn_8xb2-3x_coco.py \
#       work_dirs/scs_faster-rcnn_r50-fpn_8xb2-3x_coco/epoch_36.pth \
#       work_dirs/scs_faster-rcnn_r50-fpn_8xb2-3x_coco/slim
_base_ = [
    '../_base_/models/faster-rcnn_r50-fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/sgd-3x.py', 'mmdet::_base_/default_runtime.py',
    '../_base_/sparsity/faster-rcnn_r50-fpn_coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    type='SCSModel',
    architecture=_base_.model,
    flops_input_shape=(3, 800, 1344))
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
