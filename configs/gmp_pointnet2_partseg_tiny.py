# Gradual magnitude pruning of the tiny PointNet++, the baseline for
# gap_pointnet2_partseg_tiny.py at its 36 epochs: dense for 2 epochs, then
# the cubic ramp with a prune every 2 epochs until epoch 18 (where GaP's
# fine-tune starts), then 18 epochs with the masks fixed.
_base_ = './gap_pointnet2_partseg_tiny.py'
custom_hooks = [
    dict(
        type='GMPHook',
        exclude=_base_.custom_hooks[0].exclude,
        begin=2,
        end=18,
        interval=2,
        by_epoch=True)
]
