# GReg-1 (Wang et al., ICLR 2021), filter-wise, of the demo RetinaNet: on
# the dense baseline's checkpoint (load_from) the penalty on the picked
# filters grows, they are masked, and the rest fine-tunes, all on the
# demo's schedule.
#   python tools/train.py \
#       configs/greg/greg1-filter_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py
_base_ = [
    '../_base_/models/retinanet_r18-fpn_synthetic-coco.py',
    '../_base_/datasets/synthetic-coco.py',
    '../_base_/schedules/adamw-cosine-2k.py', '../_base_/default_runtime.py',
    '../_base_/sparsity/retinanet_r18-fpn_synthetic-coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
# The dense checkpoint this run prunes; override it on the command line.
load_from = 'work_dirs/dense_retinanet_r18-fpn_1xb8-2k_synthetic-coco/' \
    'iter_2000.pth'
# Filter-wise pruning removes whole output filters: half of them in every
# layer that can lose filters (the coupled ones are left out and named in
# the log: residual blocks' last and downsample convs, FPN convs).
gap_sparsity = 0.5
gap_distribution = 'uniform'
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='GRegHook',
        mode='filter',
        variant=1,
        exclude=_base_.gap_exclude,
        update_interval=5,
        granularity=0.005,
        upper_limit=1.0,
        stabilize=200)
]
