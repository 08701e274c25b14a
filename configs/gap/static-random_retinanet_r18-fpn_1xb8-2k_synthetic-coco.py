# Static random sparse training of the demo RetinaNet: every layer gets a
# random mask at its target (seeded by randomness.seed, the same on every
# rank) that never changes.
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
        # C-GaP's partitions; the static schedule never grows one.
        partitions=[
            r'^backbone\.layer[12]\.', r'^backbone\.layer[34]\.', r'^neck\.',
            r'^bbox_head\.'
        ],
        init='random',
        schedule=dict(type='static'))
]
