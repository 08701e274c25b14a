# SCS, structured continuous sparsification (a reconstruction of Yuan,
# Savarese and Maire, ICLR 2021), of the demo detector: the dense twin's
# model, data, optimizer, LR schedule, 2000 iterations and seed, with a gate
# on every channel of the channel groups (residual blocks' inner convs,
# the head towers) and on every residual block without a downsample. The
# FLOPs weight lambda is steered so that the frozen structure computes half
# of the full model's FLOPs; beta rises 1 -> 200 over the first 80% of the
# run, then the structure is frozen and trained. Export the smaller model:
#   python tools/train.py configs/scs_retinanet_tiny_synthetic.py
#   python tools/model_converters/slim_model.py \
#       configs/scs_retinanet_tiny_synthetic.py \
#       work_dirs/scs_retinanet_tiny_synthetic/iter_2000.pth \
#       work_dirs/scs_retinanet_tiny_synthetic/slim --input-shape 3 160 160
_base_ = './dense_retinanet_tiny_synthetic.py'
model = dict(
    _delete_=True,
    type='SCSModel',
    architecture=_base_.model,
    flops_input_shape=(3, 160, 160),
    init_logit=1.0,
    lambda_init=1.0)
# the gate logits: no weight decay (it would pull every gate to 1/2), and a
# larger step than the weights', so structure can change within the run
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={'gates.': dict(decay_mult=0.0, lr_mult=10.0)}))
custom_hooks = [
    dict(type='SCSHook', freeze=0.8, flops_target=0.5, lambda_rate=0.1)
]
