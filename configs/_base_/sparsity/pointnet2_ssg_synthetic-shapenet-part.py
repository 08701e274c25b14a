# pointnet2_ssg_shapenet-part.py for the tiny part segmentation's 36
# epochs: the same prunable set and sparsity, C-GaP in one round of
# K 3 x T 6 epochs.
_base_ = './pointnet2_ssg_shapenet-part.py'
gap_period = 6
gap_num_rounds = 1
