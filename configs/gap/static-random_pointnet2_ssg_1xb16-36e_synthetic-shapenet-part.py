# Static random sparse training of the tiny PointNet++: a random mask at the
# target (seeded by randomness.seed) that never changes.
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
        type='GaPHook',
        exclude=_base_.gap_exclude,
        # C-GaP's partitions; the static schedule never grows one.
        partitions=[r'^sa_modules\.', r'^fp_modules\.', r'^decode_head\.'],
        init='random',
        schedule=dict(type='static'))
]
