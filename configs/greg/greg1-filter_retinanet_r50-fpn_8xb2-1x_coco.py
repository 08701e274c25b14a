# GReg-1 (Wang et al., ICLR 2021), filter-wise, of RetinaNet R50-FPN on
# COCO: 12 epochs on the dense baseline's checkpoint (load_from); the
# penalty on the picked filters grows by the paper's defaults and holds
# for 5% of the run before they are masked.
#   tools/dist_train.sh \
#       configs/greg/greg1-filter_retinanet_r50-fpn_8xb2-1x_coco.py 8 \
#       --cfg-options \
#       load_from=work_dirs/dense_retinanet_r50-fpn_8xb2-3x_coco/epoch_36.pth
_base_ = [
    '../_base_/models/retinanet_r50-fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/sgd-lr0.01-1x.py', 'mmdet::_base_/default_runtime.py',
    '../_base_/sparsity/retinanet_r50-fpn_coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
# The dense checkpoint this run prunes; override it on the command line.
load_from = 'work_dirs/dense_retinanet_r50-fpn_8xb2-3x_coco/epoch_36.pth'
# Half of the output filters of every layer that can lose filters (the
# coupled ones are left out and named in the log: residual blocks' last and
# downsample convs, FPN convs).
gap_sparsity = 0.5
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='GRegHook',
        mode='filter',
        variant=1,
        exclude=_base_.gap_exclude,
        stabilize=0.05)
]
