# Gradual magnitude pruning of the tiny PointNet++ over its 36 epochs: dense
# for 2 epochs, then the cubic ramp with a prune every 2 epochs until epoch
# 18 (where C-GaP's fine-tune starts), then 18 epochs with the masks fixed.
_base_ = [
    '../_base_/models/pointnet2_ssg_synthetic-shapenet-part.py',
    '../_base_/datasets/synthetic-shapenet-part.py',
    '../_base_/schedules/adam-step-36e.py',
    '../_base_/default_runtime_3d_tiny.py',
    '../_base_/sparsity/pointnet2_ssg_synthetic-shapenet-part.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='GMPHook',
        exclude=_base_.gap_exclude,
        begin=2,
        end=18,
        interval=2,
        by_epoch=True)
]
