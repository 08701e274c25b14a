# GReg-2 (Wang et al., ICLR 2021) filter-wise of Faster R-CNN R50-FPN on
# COCO: pruning *after* training, unlike configs/gap_faster_rcnn.py. It starts
# from the dense model (configs/dense_faster_rcnn.py, or any trained mmdet
# checkpoint of this model) and trains 12 epochs: the penalty grows with the
# paper's defaults (every 5 iterations by 1e-4 up to 1.0;
# GReg-2 first grows every weight's by 1e-5 to 1e-2 and picks then), stays
# for 5% of the run, the picked filters are masked, and the rest fine-tunes
# with fixed masks; the LR drops at epochs 8 and 11. At 8 GPUs x 2 images
# (7330 iterations an epoch) the prune comes near epoch 8.0. Not yet
# measured.
#   tools/dist_train.sh configs/greg2_filter_faster_rcnn.py 8 \
#       --cfg-options load_from=work_dirs/dense_faster_rcnn/epoch_36.pth
_base_ = './gap_faster_rcnn.py'
# The dense checkpoint this run prunes; override it on the command line.
load_from = 'work_dirs/dense_faster_rcnn/epoch_36.pth'
max_epochs = 12
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=3)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[8, 11], gamma=0.1)
]
# Filter-wise pruning removes whole output filters: half of them in every
# layer that can lose filters (the coupled ones are left out and named in
# the log: residual blocks' last and downsample convs, FPN convs).
gap_sparsity = 0.5
custom_hooks = [
    dict(
        type='GRegHook',
        mode='filter',
        variant=2,
        exclude=_base_.custom_hooks[0].exclude,
        stabilize=0.05)
]
