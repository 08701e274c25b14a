# The dense twin of gap_pointnet2_partseg_tiny.py: the same model, data,
# optimizer, LR schedule, epochs and seed, without GaP (it inherits the GaP
# config so the two cannot drift apart).
#   python tools/train.py configs/dense_pointnet2_partseg_tiny.py
_base_ = './gap_pointnet2_partseg_tiny.py'
optim_wrapper = dict(type='OptimWrapper')
custom_hooks = []
