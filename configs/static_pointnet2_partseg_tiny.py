# Static sparse baseline for gap_pointnet2_partseg_tiny.py: masks chosen once
# by the magnitude of the initial weights and never changed; same model,
# data, recipe and prunable set as the GaP config it inherits.
_base_ = './gap_pointnet2_partseg_tiny.py'
custom_hooks = [dict(_base_.custom_hooks[0], schedule=dict(type='static'))]
