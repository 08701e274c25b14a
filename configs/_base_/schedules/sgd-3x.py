# mmdet's SGD schedule (LR 0.02 for 8 GPUs x 2 images) over 36 epochs,
# mmdet's familiar 3x length: the LR drops at epochs 28 and 34, validation
# every 3 epochs. The sparse methods need the length: C-GaP's rounds
# (K 4 partitions x T 3 epochs x R 2 rounds) end at epoch 24, before the
# drops, and every method and the dense baseline train on this schedule.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'
max_epochs = 36
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=3)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[28, 34], gamma=0.1)
]
