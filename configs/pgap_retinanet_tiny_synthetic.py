# Parallel GaP on the demo detector, for 2 processes on the CPU:
#   tools/dist_train.sh configs/pgap_retinanet_tiny_synthetic.py 2
# K = 2 partitions (the backbone; the FPN and the head), trained dense at the
# same time by 2 rank groups of one process each and combined every 200
# iterations for 8 rounds (1600 iterations); then both processes fine-tune
# the combined model for 400 iterations. Each process trains the 2000
# iterations of gap_retinanet_tiny_synthetic.py at its batch size, with its
# recipe, prunable set and sparsity. The quality benchmark compares it with
# C-GaP on one process with the same two partitions and iterations
# (cgap_k2_retinanet_tiny_synthetic.py).
_base_ = './gap_retinanet_tiny_synthetic.py'
pgap_period, pgap_rounds = 200, 8
train_dataloader = dict(
    sampler=dict(
        type='GroupInfiniteSampler',
        num_groups=2,
        group_samples=pgap_period * pgap_rounds * 8,  # x batch size 8
        _delete_=True))
# save only where the ranks hold one model: at the combines
default_hooks = dict(checkpoint=dict(interval=2 * pgap_period))
custom_hooks = [
    dict(
        _base_.custom_hooks[0],
        partitions=[r'^backbone\.', [r'^neck\.', r'^bbox_head\.']],
        schedule=dict(
            type='parallel', period=pgap_period, num_rounds=pgap_rounds))
]
