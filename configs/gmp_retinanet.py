# Gradual magnitude pruning (Zhu & Gupta, 2017) of RetinaNet R50-FPN on COCO,
# the baseline for configs/gap_retinanet.py with its 36 epochs, LR schedule,
# prunable set and sparsity: dense for the first epoch, then the cubic ramp to
# the target with a prune every epoch until epoch 24 (GaP's last prune), then
# 12 epochs with the masks fixed, where the LR drops.
#   tools/dist_train.sh configs/gmp_retinanet.py 8
_base_ = './gap_retinanet.py'
custom_hooks = [
    dict(
        type='GMPHook',
        exclude=_base_.custom_hooks[0].exclude,
        begin=1,
        end=24,
        interval=1,
        by_epoch=True)
]
