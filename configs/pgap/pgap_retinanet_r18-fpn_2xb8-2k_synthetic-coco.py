# P-GaP (parallel scheduled grow-and-prune) of the demo RetinaNet, for 2
# processes on the CPU:
#   tools/dist_train.sh \
#       configs/pgap/pgap_retinanet_r18-fpn_2xb8-2k_synthetic-coco.py 2
# K = 2 partitions (the backbone; the FPN and the head), trained dense at the
# same time by 2 rank groups of one process each and combined every 200
# iterations for 8 rounds (1600 iterations); then both processes fine-tune
# the combined model for 400 iterations. Each process trains the demo's 2000
# iterations at its batch size. Its one-process twin is
# configs/gap/cgap-k2_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py.
_base_ = [
    '../_base_/models/retinanet_r18-fpn_synthetic-coco.py',
    '../_base_/datasets/synthetic-coco.py',
    '../_base_/schedules/adamw-cosine-2k.py', '../_base_/default_runtime.py',
    '../_base_/sparsity/retinanet_r18-fpn_synthetic-coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
pgap_period, pgap_rounds = 200, 8
train_dataloader = dict(
    sampler=dict(
        type='GroupInfiniteSampler',
        num_groups=2,
        group_samples=pgap_period * pgap_rounds * 8,  # x batch size 8
        _delete_=True))
# save only where the ranks hold one model: at the combines
default_hooks = dict(checkpoint=dict(interval=2 * pgap_period))
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='GaPHook',
        exclude=_base_.gap_exclude,
        partitions=[r'^backbone\.', [r'^neck\.', r'^bbox_head\.']],
        schedule=dict(
            type='parallel', period=pgap_period, num_rounds=pgap_rounds))
]
