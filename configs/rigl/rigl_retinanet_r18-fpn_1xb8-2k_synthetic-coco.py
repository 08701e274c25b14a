# RigL (Evci et al., 2020) of the demo RetinaNet: a random mask at the
# target from the start; every 100 iterations until 1500 (3/4 of the run,
# as in the paper) each layer drops the smallest weights and grows those of
# largest dense gradient, 30% of its active weights at first, decaying as a
# cosine.
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
        type='RigLHook',
        exclude=_base_.gap_exclude,
        interval=100,
        end=1500,
        drop_fraction=0.3)
]
