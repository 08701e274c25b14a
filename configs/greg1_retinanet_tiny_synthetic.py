# GReg-1 (Wang et al., ICLR 2021) unstructured of the demo detector: pruning
# *after* training, unlike GaP. It starts from the dense twin's checkpoint
# (train configs/dense_retinanet_tiny_synthetic.py first), keeps the model
# dense while an L2 penalty on the weights picked for pruning grows every 5
# iterations, masks them once the penalty has driven them near 0, and
# fine-tunes with fixed masks. Same model, data, optimizer, LR schedule and
# 2000 iterations as the other methods' configs; the penalty reaches its
# limit at iteration 995, then 200 iterations at it, the prune at
# iteration 1195, then the fine-tune. Measured
# (seed 0): README.md, "GReg: pruning a trained model".
#   python tools/train.py configs/greg1_retinanet_tiny_synthetic.py \
#       --cfg-options \
#       load_from=work_dirs/dense_retinanet_tiny_synthetic/iter_2000.pth
_base_ = './gap_retinanet_tiny_synthetic.py'
# The dense checkpoint this run prunes; override it on the command line.
load_from = 'work_dirs/dense_retinanet_tiny_synthetic/iter_2000.pth'
custom_hooks = [
    dict(
        type='GRegHook',
        mode='unstructured',
        variant=1,
        exclude=_base_.custom_hooks[0].exclude,
        update_interval=5,
        granularity=0.005,
        upper_limit=1.0,
        stabilize=200)
]
