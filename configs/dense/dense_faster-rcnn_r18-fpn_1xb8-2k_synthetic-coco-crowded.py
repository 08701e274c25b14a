# The second detection task trained dense: Faster R-CNN (the demo
# detector's two-stage twin) on crowded, small shapes of 10 classes, with
# the demo's optimizer, schedule, iterations and seed. The sparse methods
# of this task compare with it.
#   python tools/train.py \
#       configs/dense/dense_faster-rcnn_r18-fpn_1xb8-2k_synthetic-coco-crowded.py
_base_ = [
    '../_base_/models/faster-rcnn_r18-fpn_synthetic-coco.py',
    '../_base_/datasets/synthetic-coco-crowded.py',
    '../_base_/schedules/adamw-cosine-2k.py', '../_base_/default_runtime.py',
    '../_base_/sparsity/faster-rcnn_r18-fpn_synthetic-coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
# 10 classes; objects from 8 px: RPN anchors from 8 px at stride 4.
model = dict(
    rpn_head=dict(anchor_generator=dict(scales=[2])),
    roi_head=dict(bbox_head=dict(num_classes=10)))
custom_hooks = []
