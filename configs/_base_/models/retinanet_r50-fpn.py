# mmdet's RetinaNet R50-FPN (ImageNet-pretrained backbone) and its
# test-time augmentation, with every backbone stage trained: mmdet freezes
# stage 1 by default, and a pruned frozen layer could never regrow.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::retinanet/retinanet_tta.py'
]
model = dict(backbone=dict(frozen_stages=-1))
