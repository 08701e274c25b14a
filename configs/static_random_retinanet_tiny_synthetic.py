# Static random sparse baseline for gap_retinanet_tiny_synthetic.py: every
# layer gets a random mask at its target (seeded by randomness.seed, the same
# on every rank) that never changes. Same model, data, recipe and prunable
# set as the GaP config it inherits.
#   python tools/train.py configs/static_random_retinanet_tiny_synthetic.py
_base_ = './gap_retinanet_tiny_synthetic.py'
custom_hooks = [
    dict(_base_.custom_hooks[0], init='random', schedule=dict(type='static'))
]
