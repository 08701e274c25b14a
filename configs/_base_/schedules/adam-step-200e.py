# The usual PointNet++ recipe: Adam, LR 1e-3 halved every 20 epochs, 200
# epochs (the original also clips the LR at 1e-5 from epoch ~180 on).
# Batch 16 per GPU on 8 GPUs; with other batch sizes use --auto-scale-lr.
max_epochs = 200
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='StepLR',
        by_epoch=True,
        step_size=20,
        gamma=0.5,
        begin=0,
        end=max_epochs)
]
auto_scale_lr = dict(enable=False, base_batch_size=128)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=1e-3, weight_decay=1e-4))
