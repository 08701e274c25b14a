# RigL (Evci et al., 2020) of RetinaNet R50-FPN on COCO: a random mask at the
# target from the start; every 1000 iterations until 2/3 of the run (epoch
# 24, C-GaP's last prune) each layer drops its smallest weights and grows
# those of largest dense gradient, 30% of its active weights at first,
# decaying as a cosine. The end is a fraction of the run, right for any
# number of GPUs.
#   tools/dist_train.sh configs/rigl/rigl_retinanet_r50-fpn_8xb2-3x_coco.py 8
_base_ = [
    '../_base_/models/retinanet_r50-fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/sgd-lr0.01-3x.py', 'mmdet::_base_/default_runtime.py',
    '../_base_/sparsity/retinanet_r50-fpn_coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='RigLHook',
        exclude=_base_.gap_exclude,
        interval=1000,
        end=24 / 36,
        drop_fraction=0.3)
]
