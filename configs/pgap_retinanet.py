# Parallel GaP (P-GaP) RetinaNet R50-FPN on COCO, the parallel schedule of
# configs/gap_retinanet.py: its K = 4 partitions are trained dense at the same
# time by 4 rank groups, combined into one model every 3 epochs (partition k
# from group k, pruned back; uncovered layers averaged), for 8 rounds (24
# epochs); then all ranks fine-tune the combined model for 12 epochs, where the
# LR drops. Each rank trains the same 36 epochs as C-GaP, and every partition
# is dense for 24 of them instead of 6.
#
# The number of processes must be a multiple of 4 (each group reads the
# whole training set, sharded over its ranks):
#   tools/dist_train.sh configs/pgap_retinanet.py 8
#   tools/slurm_train.sh PARTITION JOB configs/pgap_retinanet.py WORK_DIR 8
_base_ = './gap_retinanet.py'
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
custom_hooks = [
    dict(
        _base_.custom_hooks[0],
        schedule=dict(
            type='parallel',
            period=pgap_period,
            num_rounds=pgap_rounds,
            by_epoch=True))
]
