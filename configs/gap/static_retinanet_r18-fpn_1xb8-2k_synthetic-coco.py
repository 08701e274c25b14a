# Static sparse training of the demo RetinaNet: every layer is pruned to
# its target by the magnitude of its initial weights and the masks never
# change (no grow, no prune).
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
        schedule=dict(type='static'))
]
