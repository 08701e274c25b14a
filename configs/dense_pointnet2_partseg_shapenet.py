# Dense baseline for configs/gap_pointnet2_partseg_shapenet.py: the same
# model, data and 200-epoch schedule, without GaP (it inherits that config
# so the two can never drift apart, and switches GaP off).
#   tools/dist_train.sh configs/dense_pointnet2_partseg_shapenet.py 8
_base_ = './gap_pointnet2_partseg_shapenet.py'
# The dataset, metric and model come from gap_mm3d, without the GaP engine.
custom_imports = dict(imports=['gap_mm3d'], allow_failed_imports=False)
optim_wrapper = dict(type='OptimWrapper')
custom_hooks = []
# A dense model may keep its best validation checkpoint.
default_hooks = dict(
    checkpoint=dict(save_best='part_seg/instance_miou', rule='greater'))
