# mmdet3d's runtime for part segmentation: a log line every 50 iterations,
# a checkpoint every 10 epochs (the last three kept), and gap_mm's part
# visualisation (mmdet3d's Det3DVisualizationHook needs image or LiDAR
# files; this one draws the shapes' parts for `tools/test.py --show-dir`).
# No `save_best`: while a sparse method grows and prunes, the best
# validation score may come from a checkpoint that is not at the target
# sparsity; the last checkpoint is the sparse result.
_base_ = 'mmdet3d::_base_/default_runtime.py'
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3),
    visualization=dict(type='PartSegVisualizationHook'))
