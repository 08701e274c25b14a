# SET (Mocanu et al., 2018) of the demo RetinaNet: RigL's schedule
# (configs/rigl/rigl_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py) with
# random growth and a constant fraction of 30%.
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
        type='SETHook',
        exclude=_base_.gap_exclude,
        interval=100,
        end=1500,
        drop_fraction=0.3)
]
