# sgd-3x.py at RetinaNet's LR, 0.01 (as mmdet's retinanet_r50_fpn_1x_coco.py).
_base_ = './sgd-3x.py'
optim_wrapper = dict(optimizer=dict(lr=0.01))
