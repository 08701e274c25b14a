# What every method prunes in SSD300 (VGG-16), and how sparse: the prunable
# set (Conv and Linear weights) without `gap_exclude`, at `gap_sparsity`
# split over the layers by `gap_distribution`, as for the R50-FPN detectors
# (retinanet_r50-fpn_coco.py). The hooks read both variables at run time:
# `--cfg-options gap_sparsity=0.9` works with any launcher.
gap_sparsity = 0.8
# ERK, as on the demo tasks (configs/gap/README.md); not measured on SSD
# here. The GaP paper's 'uniform' is `--cfg-options gap_distribution=uniform`.
gap_distribution = 'erk'
# Dense: the stem conv (1.7 k weights that see raw pixels) and the head's
# output convs, which predict the class scores (cls_convs, 10.8 M weights)
# and box deltas (reg_convs, 0.5 M) of every anchor directly: a third of
# SSD300's 34.3 M conv weights, left dense as the output layers of every
# other detector here are. 22.9 M weights are pruned.
gap_exclude = [r'^backbone\.features\.0\.', r'^bbox_head\.(cls|reg)_convs\.']
