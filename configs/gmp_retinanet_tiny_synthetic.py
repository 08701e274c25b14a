# Gradual magnitude pruning (Zhu & Gupta, 2017) of the demo detector, the
# baseline for gap_retinanet_tiny_synthetic.py at the same budget: dense
# until iteration 200, then the cubic ramp to the target with a prune every
# 100 iterations until 1600 (where GaP's fine-tune and the LR decay start),
# then 400 iterations with the masks fixed.
#   python tools/train.py configs/gmp_retinanet_tiny_synthetic.py
_base_ = './gap_retinanet_tiny_synthetic.py'
custom_hooks = [
    dict(
        type='GMPHook',
        exclude=_base_.custom_hooks[0].exclude,
        begin=200,
        end=1600,
        interval=100)
]
