# SET on the tiny PointNet++, the baseline for gap_pointnet2_partseg_tiny.py:
# RigL's schedule (rigl_pointnet2_partseg_tiny.py) with random growth and a
# constant fraction of 30%.
_base_ = './gap_pointnet2_partseg_tiny.py'
custom_hooks = [
    dict(
        type='SETHook',
        exclude=_base_.custom_hooks[0].exclude,
        interval=18,
        end=0.5,
        drop_fraction=0.3)
]
