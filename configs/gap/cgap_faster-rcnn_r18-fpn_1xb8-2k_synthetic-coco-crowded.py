# C-GaP on the second detection task, with the demo's defaults untouched
# (not retuned for this task): K = 4 partitions, each dense for 200
# iterations per round, 2 rounds, then 400 iterations of fine-tune.
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
        type='GaPHook',
        exclude=_base_.gap_exclude,
        # K = 4: stages 1-2, stages 3-4, FPN + RPN, RoI head.
        partitions=[
            r'^backbone\.layer[12]\.', r'^backbone\.layer[34]\.',
            [r'^neck\.', r'^rpn_head\.'], r'^roi_head\.'
        ],
        schedule=dict(
            type='cyclic', period=_base_.gap_period, num_rounds=2))
]
