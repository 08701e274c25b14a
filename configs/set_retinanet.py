# SET (Mocanu et al., 2018): each layer drops its smallest weights and grows
# random ones, a constant 30% of its active weights, every 1000 iterations
# until 2/3 of the run (epoch 24, GaP's last prune). RetinaNet R50-FPN on COCO,
# the baseline for configs/gap_retinanet.py with its 36 epochs, LR schedule,
# prunable set and sparsity; it starts from a random mask at the target. The
# end is a fraction of the run, right for any number of GPUs.
#   tools/dist_train.sh configs/set_retinanet.py 8
_base_ = './gap_retinanet.py'
custom_hooks = [
    dict(
        type='SETHook',
        exclude=_base_.custom_hooks[0].exclude,
        interval=1000,
        end=24 / 36,
        drop_fraction=0.3)
]
