# GReg-2 (Wang et al., ICLR 2021) unstructured of RetinaNet R50-FPN on
# COCO: pruning *after* training, unlike configs/gap_retinanet.py. It starts
# from the dense model (configs/dense_retinanet.py, or any trained mmdet
# checkpoint of this model) and trains 12 epochs: the penalty grows with the
# paper's defaults (every 5 iterations by 1e-4 up to 1.0;
# GReg-2 first grows every weight's by 1e-5 to 1e-2 and picks then), stays
# for 5% of the run, the picked weights are masked, and the rest fine-tunes
# with fixed masks; the LR drops at epochs 8 and 11. At 8 GPUs x 2 images
# (7330 iterations an epoch) the prune comes near epoch 8.0. Not yet
# measured.
#   tools/dist_train.sh configs/greg2_retinanet.py 8 \
#       --cfg-options load_from=work_dirs/dense_retinanet/epoch_36.pth
_base_ = './greg1_retinanet.py'
custom_hooks = [dict(_base_.custom_hooks[0], variant=2)]
