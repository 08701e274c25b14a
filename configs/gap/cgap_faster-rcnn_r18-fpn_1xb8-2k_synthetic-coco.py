# C-GaP of the demo detector's two-stage twin, Faster R-CNN, on the demo's
# data and schedule: K = 4 partitions, each dense for 200 iterations per
# round, 2 rounds, then 400 iterations of fine-tune.
_base_ = [
    '../_base_/models/faster-rcnn_r18-fpn_synthetic-coco.py',
    '../_base_/datasets/synthetic-coco.py',
    '../_base_/schedules/adamw-cosine-2k.py', '../_base_/default_runtime.py',
    '../_base_/sparsity/faster-rcnn_r18-fpn_synthetic-coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
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
