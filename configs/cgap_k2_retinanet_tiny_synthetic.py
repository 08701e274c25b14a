# C-GaP on the demo detector with the two partitions of
# pgap_retinanet_tiny_synthetic.py (the backbone; the FPN and the head), its
# one-process twin at the same iterations per process: each partition dense
# for 200 iterations per round, 4 rounds (1600 iterations), then 400
# iterations of fine-tune.
#   python tools/train.py configs/cgap_k2_retinanet_tiny_synthetic.py
_base_ = './gap_retinanet_tiny_synthetic.py'
custom_hooks = [
    dict(
        _base_.custom_hooks[0],
        partitions=[r'^backbone\.', [r'^neck\.', r'^bbox_head\.']],
        schedule=dict(type='cyclic', period=200, num_rounds=4))
]
