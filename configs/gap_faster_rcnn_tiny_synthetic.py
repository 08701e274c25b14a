# Small GaP Faster R-CNN for the CPU, the twin of
# gap_retinanet_tiny_synthetic.py: half-width ResNet-18-shaped backbone
# without pretrained weights, 64-channel FPN, small RPN/RoI heads, 160x160
# shapes (data and schedule in _base_/tiny_synthetic_160.py).
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    './_base_/tiny_synthetic_160.py'
]

gap_sparsity = 0.8
gap_distribution = 'erk'  # as the RetinaNet twin; see its config

model = dict(
    backbone=dict(
        depth=18,
        base_channels=32,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(
        in_channels=64,
        feat_channels=64,
        # objects are 10-56 px at 160 px: 16 px anchors at stride 4
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=6)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100)))

custom_hooks = [
    dict(
        type='GaPHook',
        exclude=[
            r'^backbone\.conv1\.', r'^rpn_head\.rpn_(cls|reg)\.',
            r'^roi_head\.bbox_head\.fc_(cls|reg)\.'
        ],
        partitions=[
            r'^backbone\.layer[12]\.', r'^backbone\.layer[34]\.',
            [r'^neck\.', r'^rpn_head\.'], r'^roi_head\.'
        ],
        schedule=dict(
            type='cyclic', period={{_base_.gap_period}}, num_rounds=2))
]
