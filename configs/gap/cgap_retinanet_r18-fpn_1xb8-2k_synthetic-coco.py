# C-GaP (cyclic scheduled grow-and-prune) of the demo RetinaNet: the
# README's demo (scripts/demo.sh). Each of K = 4 partitions is grown dense
# for 200 iterations and pruned back by magnitude, in turn, for 2 rounds
# (1600 iterations), then 400 iterations of fine-tune with all masks fixed.
#   python tools/train.py \
#       configs/gap/cgap_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py
_base_ = [
    '../_base_/models/retinanet_r18-fpn_synthetic-coco.py',
    '../_base_/datasets/synthetic-coco.py',
    '../_base_/schedules/adamw-cosine-2k.py', '../_base_/default_runtime.py',
    '../_base_/sparsity/retinanet_r18-fpn_synthetic-coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='GaPHook',
        exclude=_base_.gap_exclude,
        # K = 4: stages 1-2 (0.17 M weights), stages 3-4 (2.6 M), FPN,
        # head towers (0.14 M each).
        partitions=[
            r'^backbone\.layer[12]\.', r'^backbone\.layer[34]\.', r'^neck\.',
            r'^bbox_head\.'
        ],
        schedule=dict(
            type='cyclic', period=_base_.gap_period, num_rounds=2))
]
