# What every method prunes in the demo Faster R-CNN, and how sparse (see
# retinanet_r18-fpn_synthetic-coco.py): 80%, split by ERK as in the
# RetinaNet twin.
gap_sparsity = 0.8
gap_distribution = 'erk'
# Dense: the stem conv and the output layers (RPN cls/reg, RoI
# fc_cls/fc_reg).
gap_exclude = [
    r'^backbone\.conv1\.', r'^rpn_head\.rpn_(cls|reg)\.',
    r'^roi_head\.bbox_head\.fc_(cls|reg)\.'
]
# C-GaP's period in iterations (K 4 x T 200 x R 2 = 1600).
gap_period = 200
