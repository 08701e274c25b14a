# A plain MMEngine config (no gap_mm) for the launcher tests.
custom_imports = dict(
    imports=['gap_toy_launcher_module'], allow_failed_imports=False)
default_scope = 'mmengine'

model = dict(type='LauncherToyModel')
_dataloader = dict(
    dataset=dict(type='LauncherToyDataset'),
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    batch_size=2,
    num_workers=0)
train_dataloader = _dataloader
val_dataloader = _dataloader
test_dataloader = _dataloader
val_evaluator = dict(type='LauncherToyMetric')
test_evaluator = val_evaluator

train_cfg = dict(by_epoch=False, max_iters=4, val_interval=2)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2),
    dict(type='MultiStepLR', by_epoch=False, milestones=[3], gamma=0.1),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2))
env_cfg = dict(dist_cfg=dict(backend='nccl'))
randomness = dict(seed=0)
log_level = 'INFO'
