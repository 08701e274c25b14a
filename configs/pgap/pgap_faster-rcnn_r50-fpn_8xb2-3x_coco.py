# P-GaP (parallel scheduled grow-and-prune) of Faster R-CNN R50-FPN on COCO:
# C-GaP's K = 4 partitions are trained dense at the same time by 4 rank groups,
# combined into one model every 3 epochs (partition k from group k, pruned
# back; uncovered layers averaged), for 8 rounds (24 epochs); then all ranks
# fine-tune the combined model for 12 epochs, where the LR drops. Each rank
# trains 36 epochs, as in C-GaP, and every partition is dense for 24 of them
# instead of 6. The number of processes must be a multiple of 4 (each group
# reads the whole training set, sharded over its ranks):
#   tools/dist_train.sh configs/pgap/pgap_faster-rcnn_r50-fpn_8xb2-3x_coco.py 8
#   tools/slurm_train.sh PARTITION JOB \
#       configs/pgap/pgap_faster-rcnn_r50-fpn_8xb2-3x_coco.py WORK_DIR 8
_base_ = [
    '../_base_/models/faster-rcnn_r50-fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/sgd-3x.py', 'mmdet::_base_/default_runtime.py',
    '../_base_/sparsity/faster-rcnn_r50-fpn_coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
pgap_period, pgap_rounds = 3, 8
train_dataloader = dict(
    sampler=dict(
        type='GroupDefaultSampler',
        num_groups=4,
        group_epochs=pgap_period * pgap_rounds,
        _delete_=True))
# validate and save only where the ranks hold one model: at the combines
train_cfg = dict(val_interval=pgap_period)
default_hooks = dict(checkpoint=dict(interval=pgap_period))
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='GaPHook',
        exclude=_base_.gap_exclude,
        # K = 4: backbone stages 1-3 (8.5 M weights), stage 4 (14.9 M),
        # neck + RPN (3.9 M), RoI head (13.9 M).
        partitions=[
            r'^backbone\.layer[123]\.', r'^backbone\.layer4\.',
            [r'^neck\.', r'^rpn_head\.'], r'^roi_head\.'
        ],
        schedule=dict(
            type='parallel',
            period=pgap_period,
            num_rounds=pgap_rounds,
            by_epoch=True))
]
