# Small GaP RetinaNet for the CPU: the README's demo (scripts/demo.sh).
#
# A ResNet-18-shaped backbone at half width (base_channels=32) without
# pretrained weights, a 64-channel FPN and head, on the 160x160 shapes
# dataset (see _base_/tiny_synthetic_160.py for data and schedule).
#   python tools/train.py configs/gap_retinanet_tiny_synthetic.py
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    './_base_/tiny_synthetic_160.py'
]

# 80% of the prunable weights, split by ERK (Erdos-Renyi-kernel, as in
# RigL): the wide stage 3-4 convs, 85% of the weights, are pruned hardest and
# the narrow early, neck and head layers keep more. With 'uniform' (every
# layer at 80%) this half-width detector trained from scratch lands 9 mAP
# points below its dense twin; with ERK it matches it (see
# benchmarks/quality/README.md). GaPHook reads both variables at run time:
# --cfg-options gap_sparsity=0.9 gap_distribution=uniform works with any
# launcher.
gap_sparsity = 0.8
gap_distribution = 'erk'

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

custom_hooks = [
    dict(
        type='GaPHook',
        exclude=[r'^backbone\.conv1\.', r'^bbox_head\.retina_(cls|reg)\.'],
        # K = 4: stages 1-2 (0.17 M weights), stages 3-4 (2.6 M), FPN,
        # head towers (0.14 M each).
        partitions=[
            r'^backbone\.layer[12]\.', r'^backbone\.layer[34]\.', r'^neck\.',
            r'^bbox_head\.'
        ],
        schedule=dict(
            type='cyclic', period={{_base_.gap_period}}, num_rounds=2))
]
