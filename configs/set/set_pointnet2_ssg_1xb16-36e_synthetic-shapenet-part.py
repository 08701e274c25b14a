# SET of the tiny PointNet++: RigL's schedule
# (configs/rigl/rigl_pointnet2_ssg_1xb16-36e_synthetic-shapenet-part.py) with
# random growth and a constant fraction of 30%.
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
        type='SETHook',
        exclude=_base_.gap_exclude,
        interval=18,
        end=0.5,
        drop_fraction=0.3)
]
