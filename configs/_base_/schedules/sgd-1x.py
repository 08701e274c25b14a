# mmdet's 12-epoch SGD schedule (LR 0.02 for 8 GPUs x 2 images, drops at
# epochs 8 and 11), validating every 3 epochs: the length of a fine-tune
# from a trained dense model (GReg).
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'
max_epochs = 12
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=3)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[8, 11], gamma=0.1)
]
