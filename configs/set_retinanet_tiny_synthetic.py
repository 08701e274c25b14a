# SET (Mocanu et al., 2018) on the demo detector, the baseline for
# gap_retinanet_tiny_synthetic.py at the same budget: RigL's schedule
# (rigl_retinanet_tiny_synthetic.py) with random growth and a constant
# fraction of 30%.
#   python tools/train.py configs/set_retinanet_tiny_synthetic.py
_base_ = './gap_retinanet_tiny_synthetic.py'
custom_hooks = [
    dict(
        type='SETHook',
        exclude=_base_.custom_hooks[0].exclude,
        interval=100,
        end=1500,
        drop_fraction=0.3)
]
