# What every method prunes in the demo RetinaNet, and how sparse: the
# prunable set (Conv and Linear weights) without `gap_exclude`, at
# `gap_sparsity` split over the layers by `gap_distribution`. Dense
# configs carry these too, so they are measured over the same set.
#
# 80% of the prunable weights, split by ERK (Erdos-Renyi-kernel, as in
# RigL): the wide stage 3-4 convs, 85% of the weights, are pruned hardest
# and the narrow early, neck and head layers keep more ('uniform' puts
# every layer at 80%). The hooks read both variables at run time:
# --cfg-options gap_sparsity=0.9 gap_distribution=uniform works with any
# launcher.
gap_sparsity = 0.8
gap_distribution = 'erk'
# Dense: the stem conv and the two output convs of the head.
gap_exclude = [r'^backbone\.conv1\.', r'^bbox_head\.retina_(cls|reg)\.']
# C-GaP's period in iterations (K 4 x T 200 x R 2 = 1600, where the
# schedule's LR decay begins).
gap_period = 200
