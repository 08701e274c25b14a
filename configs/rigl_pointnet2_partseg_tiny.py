# RigL on the tiny PointNet++, the baseline for gap_pointnet2_partseg_tiny.py
# at its 36 epochs (324 iterations): a random mask at the target; every 18
# iterations (2 epochs) until 1/2 of the run, each layer rewires 30% of its
# active weights at first, decaying as a cosine.
_base_ = './gap_pointnet2_partseg_tiny.py'
custom_hooks = [
    dict(
        type='RigLHook',
        exclude=_base_.custom_hooks[0].exclude,
        interval=18,
        end=0.5,
        drop_fraction=0.3)
]
