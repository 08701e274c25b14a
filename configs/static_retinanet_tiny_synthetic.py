# Static sparse baseline for gap_retinanet_tiny_synthetic.py: every layer is
# pruned to its target by the magnitude of its initial weights and the masks
# never change (no grow, no prune). Same model, data, recipe and prunable set
# as the GaP config it inherits.
#   python tools/train.py configs/static_retinanet_tiny_synthetic.py
_base_ = './gap_retinanet_tiny_synthetic.py'
custom_hooks = [dict(_base_.custom_hooks[0], schedule=dict(type='static'))]
