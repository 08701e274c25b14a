# RetinaNet R50-FPN on COCO trained dense: the model, data and 36-epoch
# schedule every sparse method of configs/ trains with.
#   tools/dist_train.sh configs/dense/dense_retinanet_r50-fpn_8xb2-3x_coco.py 8
_base_ = [
    '../_base_/models/retinanet_r50-fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/sgd-lr0.01-3x.py', 'mmdet::_base_/default_runtime.py',
    '../_base_/sparsity/retinanet_r50-fpn_coco.py'
]
custom_hooks = []
