# Gradual magnitude pruning (Zhu & Gupta, 2017) of the demo RetinaNet: dense
# until iteration 200, then the cubic ramp to the target with a prune every
# 100 iterations until 1600 (where C-GaP's fine-tune and the LR decay
# start), then 400 iterations with the masks fixed.
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
        type='GMPHook',
        exclude=_base_.gap_exclude,
        begin=200,
        end=1600,
        interval=100)
]
