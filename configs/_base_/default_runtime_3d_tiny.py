# default_runtime_3d.py for the tiny part segmentation's 36 epochs of 9
# iterations: a log line every epoch, one checkpoint, at the end.
_base_ = './default_runtime_3d.py'
default_hooks = dict(
    logger=dict(interval=9),
    checkpoint=dict(interval=36, max_keep_ckpts=1))
log_processor = dict(window_size=9)
