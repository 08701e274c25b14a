# mmdet's Faster R-CNN R50-FPN (ImageNet-pretrained backbone), with every
# backbone stage trained: mmdet freezes stage 1 by default, and a pruned
# frozen layer could never regrow.
_base_ = 'mmdet::_base_/models/faster-rcnn_r50_fpn.py'
model = dict(backbone=dict(frozen_stages=-1))
