# C-GaP (cyclic scheduled grow-and-prune) of SSD300 (VGG-16) on COCO, on
# mmdet's 24-epoch schedule (mmdet repeats COCO 5 times per epoch): each of
# K = 4 partitions is grown dense for 2 epochs and pruned back by magnitude,
# in turn, for 2 rounds (16 epochs), then 8 epochs of fine-tune with all
# masks fixed, where the LR drops (epochs 16 and 22).
#   tools/dist_train.sh configs/gap/cgap_ssd300_vgg16_8xb8-2x_coco.py 8
#   python tools/test.py configs/gap/cgap_ssd300_vgg16_8xb8-2x_coco.py \
#       work_dirs/cgap_ssd300_vgg16_8xb8-2x_coco/epoch_24.pth
# mmdet 3.3.0 cannot predict with its own SSDHead (it reads a `loss_cls`
# that SSDHead lacks, open-mmlab/mmdetection#11780): the head here is
# gap_mm's FixedSSDHead, the same layers with that attribute, so the
# validation during training and tools/test.py (gap_mm's or mmdet's, with
# this config) run.
_base_ = [
    'mmdet::ssd/ssd300_coco.py', '../_base_/sparsity/ssd300_vgg16_coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
model = dict(bbox_head=dict(type='FixedSSDHead'))
optim_wrapper = dict(type='GaPOptimWrapper')
# mmdet's SSD config keeps NumClassCheckHook and CheckInvalidLossHook in
# its custom_hooks; a child's list replaces the base's, so append to it.
custom_hooks = _base_.custom_hooks + [
    dict(
        type='GaPHook',
        exclude=_base_.gap_exclude,
        # K = 4: VGG-16 conv1-4 (7.6 M weights), conv5 (7.1 M), fc6-7 as
        # convs (5.8 M), the neck's extra layers (2.5 M).
        partitions=[
            r'^backbone\.features\.(\d|1\d|2[0-3])\.',
            r'^backbone\.features\.2[4-9]\.', r'^backbone\.features\.3\d\.',
            r'^neck\.'
        ],
        schedule=dict(type='cyclic', period=2, num_rounds=2, by_epoch=True))
]
