# RigL of the tiny PointNet++ over its 36 epochs (324 iterations): a random
# mask at the target; every 18 iterations (2 epochs) until 1/2 of the run,
# each layer rewires 30% of its active weights at first, decaying as a
# cosine.
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
        type='RigLHook',
        exclude=_base_.gap_exclude,
        interval=18,
        end=0.5,
        drop_fraction=0.3)
]
