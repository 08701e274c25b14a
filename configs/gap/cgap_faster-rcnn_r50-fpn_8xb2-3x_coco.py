# C-GaP (cyclic scheduled grow-and-prune) of Faster R-CNN R50-FPN on COCO, 36
# epochs: each of K = 4 partitions is grown dense for 3 epochs and pruned back
# by magnitude, in turn, for 2 rounds (24 epochs), then 12 epochs of fine-tune
# with all masks fixed, where the LR drops.
#   tools/dist_train.sh configs/gap/cgap_faster-rcnn_r50-fpn_8xb2-3x_coco.py 8
#   tools/dist_train.sh \
#       configs/gap/cgap_faster-rcnn_r50-fpn_8xb2-3x_coco.py 8 \
#       --cfg-options gap_sparsity=0.9 gap_distribution=uniform
# The result is an ordinary mmdet checkpoint whose pruned weights are 0;
# mmdet's own tools/test.py evaluates it with the upstream config.
_base_ = [
    '../_base_/models/faster-rcnn_r50-fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/sgd-3x.py', 'mmdet::_base_/default_runtime.py',
    '../_base_/sparsity/faster-rcnn_r50-fpn_coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='GaPHook',
        exclude=_base_.gap_exclude,
        # K = 4: backbone stages 1-3 (8.5 M weights), stage 4 (14.9 M),
        # neck + RPN (3.9 M), RoI head (13.9 M).
        partitions=[
            r'^backbone\.layer[123]\.', r'^backbone\.layer4\.',
            [r'^neck\.', r'^rpn_head\.'], r'^roi_head\.'
        ],
        schedule=dict(type='cyclic', period=3, num_rounds=2, by_epoch=True))
]
