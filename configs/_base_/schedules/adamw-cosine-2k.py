# 2000 iterations of AdamW (it converges from scratch far faster than SGD on
# this budget), warm-up over the first 50, cosine decay over the last 400.
# The decay starts at 1600, where the GaP rounds of the demo's C-GaP
# (K 4 partitions x T 200 iterations x R 2 rounds) end and its fine-tune with
# all masks fixed begins; every method is trained on this same schedule.
max_iters = 2000
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=1600,
         end=max_iters, T_max=max_iters - 1600, eta_min=1e-5)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
