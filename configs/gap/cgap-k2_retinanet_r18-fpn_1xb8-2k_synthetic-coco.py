# C-GaP of the demo RetinaNet with the two partitions of P-GaP's
# (configs/pgap/pgap_retinanet_r18-fpn_2xb8-2k_synthetic-coco.py), its
# one-process twin at the same iterations per process: each partition dense
# for 200 iterations per round, 4 rounds (1600 iterations), then 400
# iterations of fine-tune.
_base_ = [
    '../_base_/models/retinanet_r18-fpn_synthetic-coco.py',
    '../_base_/datasets/synthetic-coco.py',
    '../_base_/schedules/adamw-cosine-2k.py', '../_base_/default_runtime.py',
    '../_base_/sparsity/retinanet_r18-fpn_synthetic-coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='GaPHook',
        exclude=_base_.gap_exclude,
        # K = 2: the backbone; the FPN and the head.
        partitions=[r'^backbone\.', [r'^neck\.', r'^bbox_head\.']],
        schedule=dict(type='cyclic', period=200, num_rounds=4))
]
