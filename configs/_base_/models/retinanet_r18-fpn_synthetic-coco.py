# The demo detector: RetinaNet with a ResNet-18-shaped backbone at half
# width (base_channels=32) and no pretrained weights, a 64-channel FPN and
# head, for the 160x160 shapes of datasets/synthetic-coco.py (6 classes).
_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'
model = dict(
    backbone=dict(
        depth=18,
        base_channels=32,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64, num_outs=3),
    bbox_head=dict(
        num_classes=6,
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        # objects are 10-56 px at 160 px: anchors from 16 px at stride 8
        anchor_generator=dict(octave_base_scale=2, strides=[8, 16, 32])),
    test_cfg=dict(nms_pre=300, max_per_img=50))
