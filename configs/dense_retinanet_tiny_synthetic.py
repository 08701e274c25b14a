# The dense twin of gap_retinanet_tiny_synthetic.py: the same model, data,
# optimizer, LR schedule, iterations and seed, without GaP. It inherits the
# GaP config so the two cannot drift apart; the results table compares
# every sparse method with it.
#   python tools/train.py configs/dense_retinanet_tiny_synthetic.py
_base_ = './gap_retinanet_tiny_synthetic.py'
optim_wrapper = dict(type='OptimWrapper')
custom_hooks = []
