# SCS (structured continuous sparsification, a reconstruction of Yuan,
# Savarese and Maire, ICLR 2021) of the small PointNet++ part segmentation:
# the dense twin's model, data, optimizer, LR schedule and 36 epochs, with
# a gate on every output channel of the shared MLPs' inner layers (each
# MLP's last layer feeds the max-pool, the next level's grouping and the
# feature propagation, and stays ungated); no residual blocks. The choices
# of the demo detector (scs_retinanet_tiny_synthetic.py): a dense quarter,
# lambda steered to half of the FLOPs (counted for one cloud of 512
# points), the structure frozen at 80% of the run, the gate logits by SGD
# inside GaPOptimWrapper's step. The run is 324 iterations, so lambda
# starts at 0.1 and moves every iteration: with the detector's 0.01 and
# every 10 it only reached 0.024 and the structure froze at 0.73 of the
# FLOPs; with these it reached 0.61 / 0.39 for targets 0.5 / 0.3 (two
# seeds each): its gates stop moving once beta saturates them, about half
# way, before lambda has brought them to the target. So the structure is
# landed on the target at the freeze (land_on_target: the gates of highest
# logit, as many as the target allows, and each layer's top channel).
#   python tools/train.py configs/scs_pointnet2_partseg_tiny.py
_base_ = './dense_pointnet2_partseg_tiny.py'
model = dict(
    _delete_=True,
    type='SCSModel',
    architecture=_base_.model,
    flops_input_shape=(512, 6),
    lambda_init=0.1)
optim_wrapper = dict(type='GaPOptimWrapper')
custom_hooks = [
    dict(
        type='SCSHook',
        begin=0.25,
        freeze=0.8,
        flops_target=0.5,
        lambda_interval=1,
        gate_lr=100.0,
        land_on_target=True)
]
# in the warm-up and after the freeze the gate logits get no gradient: DDP
# (tools/dist_train.sh) must allow that
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)
