# GaP (scheduled grow-and-prune) Faster R-CNN R50-FPN on COCO, 36 epochs.
#
#   tools/dist_train.sh configs/gap_faster_rcnn.py 8
#   tools/dist_train.sh configs/gap_faster_rcnn.py 8 \
#       --cfg-options gap_sparsity=0.9 gap_distribution=erk
#
# The result is an ordinary mmdet checkpoint whose pruned weights are 0;
# mmdet's own tools/test.py evaluates it with the upstream config.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)

# Training length: 36 epochs = GaP rounds (K 4 partitions x T 3 epochs x
# R 2 rounds = 24 epochs) + 12 epochs of fine-tune with all masks fixed.
# mmdet's 1x (12 epochs) is too short for grow-and-prune: each partition is
# trained dense for a few epochs before it is pruned back, and every
# partition gets two turns. 36 epochs is mmdet's familiar 3x length. The LR
# drops (epochs 28 and 34) fall in the fine-tune, after the last prune at
# epoch 24. The dense baseline (configs/dense_*.py) uses this same schedule.
max_epochs = 36
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=3)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[28, 34], gamma=0.1)
]

# Target sparsity of the prunable weights, and how it is split over layers:
# 'uniform' (every layer at gap_sparsity), 'erk' (non-uniform by layer
# shape, as in RigL) or 'global' (one magnitude threshold; over this
# model's freshly initialised layers it empties roi_head's shared_fcs.0,
# which GaPHook refuses). The hook below sets neither, so it reads these
# variables at run time: `--cfg-options gap_sparsity=0.9` works with any
# launcher (gap_mm's or mmdet's tools/train.py, mim).
gap_sparsity = 0.8
gap_distribution = 'uniform'

# All stages train (mmdet freezes stage 1 by default): a pruned frozen layer
# could never regrow.
model = dict(backbone=dict(frozen_stages=-1))

optim_wrapper = dict(type='GaPOptimWrapper')

custom_hooks = [
    dict(
        type='GaPHook',
        # Stay dense: the stem conv (9 k weights that see raw pixels) and
        # the output layers that produce scores and box deltas (RPN cls/reg,
        # RoI fc_cls/fc_reg): tiny, and pruning them costs accuracy for no
        # saving. Everything else (conv and linear weights) is pruned.
        exclude=[
            r'^backbone\.conv1\.', r'^rpn_head\.rpn_(cls|reg)\.',
            r'^roi_head\.bbox_head\.fc_(cls|reg)\.'
        ],
        # K = 4 partitions, each grown in turn: backbone stages 1-3 (8.5 M
        # weights), stage 4 (14.9 M), neck + RPN (3.9 M), RoI head (13.9 M).
        partitions=[
            r'^backbone\.layer[123]\.', r'^backbone\.layer4\.',
            [r'^neck\.', r'^rpn_head\.'], r'^roi_head\.'
        ],
        schedule=dict(type='cyclic', period=3, num_rounds=2, by_epoch=True))
]
