# GaP (scheduled grow-and-prune) RetinaNet R50-FPN on COCO, 36 epochs.
#
#   tools/dist_train.sh configs/gap_retinanet.py 8
#   tools/dist_train.sh configs/gap_retinanet.py 8 \
#       --cfg-options gap_sparsity=0.9 gap_distribution=erk
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
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

# See configs/gap_faster_rcnn.py.
gap_sparsity = 0.8
gap_distribution = 'uniform'

model = dict(backbone=dict(frozen_stages=-1))

optim_wrapper = dict(type='GaPOptimWrapper')

custom_hooks = [
    dict(
        type='GaPHook',
        # Dense: the stem conv and the two output convs of the head.
        exclude=[r'^backbone\.conv1\.', r'^bbox_head\.retina_(cls|reg)\.'],
        # K = 4: backbone stages 1-3 (8.5 M weights), stage 4 (14.9 M), FPN
        # (8.0 M, with the extra P6/P7 convs), the head's towers (4.7 M).
        partitions=[
            r'^backbone\.layer[123]\.', r'^backbone\.layer4\.', r'^neck\.',
            r'^bbox_head\.'
        ],
        schedule=dict(type='cyclic', period=3, num_rounds=2, by_epoch=True))
]
