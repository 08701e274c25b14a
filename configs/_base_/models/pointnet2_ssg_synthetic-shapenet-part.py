# The part segmentation network of pointnet2_ssg.py at about 1/4
# width (0.19 M parameters), for 512-point clouds on the CPU.
_base_ = './pointnet2_ssg.py'
model = dict(
    sa_cfgs=[
        dict(
            num_point=128,
            radii=(0.2, ),
            sample_nums=(16, ),
            mlp_channels=((32, 32, 64), )),
        dict(
            num_point=32,
            radii=(0.4, ),
            sample_nums=(16, ),
            mlp_channels=((64, 64, 128), )),
        dict(num_point=None, mlp_channels=((128, 256), )),
    ],
    fp_channels=[(128, 128), (128, 64), (64, 64)],
    decode_head=dict(channels=64))
