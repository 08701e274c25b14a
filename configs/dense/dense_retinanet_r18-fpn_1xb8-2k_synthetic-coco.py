# The demo RetinaNet trained dense: the model, data, optimizer, LR schedule,
# iterations and seed every sparse method of the demo trains with; the
# results tables compare every method with it.
#   python tools/train.py \
#       configs/dense/dense_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py
_base_ = [
    '../_base_/models/retinanet_r18-fpn_synthetic-coco.py',
    '../_base_/datasets/synthetic-coco.py',
    '../_base_/schedules/adamw-cosine-2k.py', '../_base_/default_runtime.py',
    '../_base_/sparsity/retinanet_r18-fpn_synthetic-coco.py'
]
custom_imports = dict(imports=['gap_mm'], allow_failed_imports=False)
custom_hooks = []
