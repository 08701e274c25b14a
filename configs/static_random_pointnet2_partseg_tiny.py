# Static random sparse baseline for gap_pointnet2_partseg_tiny.py: a random
# mask at the target (seeded by randomness.seed) that never changes; same
# model, data, recipe and prunable set as the GaP config it inherits.
_base_ = './gap_pointnet2_partseg_tiny.py'
custom_hooks = [
    dict(_base_.custom_hooks[0], init='random', schedule=dict(type='static'))
]
