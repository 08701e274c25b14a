# adam-step-200e.py shrunk for one process: 36 epochs, twice the LR (2e-3,
# batch 16 on one process), halved every 12 epochs, validation at the end.
max_epochs = 36
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='StepLR',
        by_epoch=True,
        step_size=12,
        gamma=0.5,
        begin=0,
        end=max_epochs)
]
auto_scale_lr = dict(enable=False, base_batch_size=128)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=2e-3, weight_decay=1e-4))
