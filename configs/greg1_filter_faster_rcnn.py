# GReg-1 (Wang et al., ICLR 2021) filter-wise of Faster R-CNN R50-FPN on
# COCO: pruning *after* training, unlike configs/gap_faster_rcnn.py. It starts
# from the dense model (configs/dense_faster_rcnn.py, or any trained mmdet
# checkpoint of this model) and trains 12 epochs: the penalty grows with the
# paper's defaults (every 5 iterations by 1e-4 up to 1.0), stays
# for 5% of the run, the picked filters are masked, and the rest fine-tunes
# with fixed masks; the LR drops at epochs 8 and 11. At 8 GPUs x 2 images
# (7330 iterations an epoch) the prune comes near epoch 7.4. Not yet
# measured.
#   tools/dist_train.sh configs/greg1_filter_faster_rcnn.py 8 \
#       --cfg-options load_from=work_dirs/dense_faster_rcnn/epoch_36.pth
_base_ = './greg1_faster_rcnn.py'
# Filter-wise pruning removes whole output filters: half of them in every
# layer that can lose filters (the coupled ones are left out and named in
# the log: residual blocks' last and downsample convs, FPN convs).
gap_sparsity = 0.5
custom_hooks = [dict(_base_.custom_hooks[0], mode='filter')]
