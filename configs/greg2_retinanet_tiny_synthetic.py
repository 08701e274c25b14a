# GReg-2 (Wang et al., ICLR 2021) unstructured of the demo detector: pruning
# *after* training, unlike GaP. It starts from the dense twin's checkpoint
# (train configs/dense_retinanet_tiny_synthetic.py first), keeps the model
# dense while an L2 penalty on the weights picked for pruning grows every 5
# iterations, masks them once the penalty has driven them near 0, and
# fine-tunes with fixed masks. Same model, data, optimizer, LR schedule and
# 2000 iterations as the other methods' configs; every weight's penalty
# grows to 1e-2 by iteration 245 (the pick), then the picked set's reaches
# the limit at iteration 1235, then 200 iterations at it, the prune at
# iteration 1435, then the fine-tune. Measured
# (seed 0): README.md, "GReg: pruning a trained model".
#   python tools/train.py configs/greg2_retinanet_tiny_synthetic.py \
#       --cfg-options \
#       load_from=work_dirs/dense_retinanet_tiny_synthetic/iter_2000.pth
_base_ = './greg1_retinanet_tiny_synthetic.py'
custom_hooks = [
    dict(
        _base_.custom_hooks[0],
        variant=2,
        granularity_pick=2e-4,
        upper_limit_pick=1e-2,
        granularity_recover=-1e-4)
]
