# RigL (Evci et al., 2020) on the demo detector, the baseline for
# gap_retinanet_tiny_synthetic.py at the same budget: a random mask at the
# target from the start; every 100 iterations until 1500 (3/4 of the run, as
# in the paper) each layer drops the smallest weights and grows those of
# largest dense gradient, 30% of its active weights at first, decaying as a
# cosine.
#   python tools/train.py configs/rigl_retinanet_tiny_synthetic.py
_base_ = './gap_retinanet_tiny_synthetic.py'
custom_hooks = [
    dict(
        type='RigLHook',
        exclude=_base_.custom_hooks[0].exclude,
        interval=100,
        end=1500,
        drop_fraction=0.3)
]
