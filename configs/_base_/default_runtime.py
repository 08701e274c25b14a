# mmdet's runtime for the demo detectors, trained by iteration: a log line
# every 25 iterations, a checkpoint every 500 (the last two kept), and a
# fixed seed (the README's figures come from these configs and data).
_base_ = 'mmdet::_base_/default_runtime.py'
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=500,
        max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
