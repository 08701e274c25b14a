# GReg-1 (Wang et al., ICLR 2021) filter-wise of the demo detector: pruning
# *after* training, unlike GaP. It starts from the dense twin's checkpoint
# (train configs/dense_retinanet_tiny_synthetic.py first), keeps the model
# dense while an L2 penalty on the weights picked for pruning grows every 5
# iterations, masks them once the penalty has driven them near 0, and
# fine-tunes with fixed masks. Same model, data, optimizer, LR schedule and
# 2000 iterations as the other methods' configs; the penalty reaches its
# limit at iteration 995, then 200 iterations at it, the prune at
# iteration 1195, then the fine-tune. Measured
# (seed 0): README.md, "GReg: pruning a trained model".
#   python tools/train.py configs/greg1_filter_retinanet_tiny_synthetic.py \
#       --cfg-options \
#       load_from=work_dirs/dense_retinanet_tiny_synthetic/iter_2000.pth
_base_ = './greg1_retinanet_tiny_synthetic.py'
# Filter-wise pruning removes whole output filters: half of them in every
# layer that can lose filters (the coupled ones are left out and named in
# the log: residual blocks' last and downsample convs, FPN convs).
gap_sparsity = 0.5
gap_distribution = 'uniform'
custom_hooks = [dict(_base_.custom_hooks[0], mode='filter')]
