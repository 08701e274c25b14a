# SET on the second detection task: the demo's SET settings (drop and
# regrow 30% of each layer's kept weights at random every 100 iterations
# until 1500).
_base_ = [
    '../_base_/models/faster-rcnn_r18-fpn_synthetic-coco.py',
    '../_base_/datasets/synthetic-coco-crowded.py',
    '../_base_/schedules/adamw-cosine-2k.py', '../_base_/default_runtime.py',
    '../_base_/sparsity/faster-rcnn_r18-fpn_synthetic-coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
# 10 classes; objects from 8 px: RPN anchors from 8 px at stride 4.
model = dict(
    rpn_head=dict(anchor_generator=dict(scales=[2])),
    roi_head=dict(bbox_head=dict(num_classes=10)))
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='SETHook',
        exclude=_base_.gap_exclude,
        interval=100,
        end=1500,
        drop_fraction=0.3)
]
