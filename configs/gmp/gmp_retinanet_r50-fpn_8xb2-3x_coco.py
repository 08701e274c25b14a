# Gradual magnitude pruning (Zhu & Gupta, 2017) of RetinaNet R50-FPN on COCO:
# dense for the first epoch, then the cubic ramp to the target with a prune
# every epoch until epoch 24 (C-GaP's last prune), then 12 epochs with the
# masks fixed, where the LR drops.
#   tools/dist_train.sh configs/gmp/gmp_retinanet_r50-fpn_8xb2-3x_coco.py 8
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
        type='GMPHook',
        exclude=_base_.gap_exclude,
        begin=1,
        end=24,
        interval=1,
        by_epoch=True)
]
