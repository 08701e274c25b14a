# gap_mm's PointNet2PartSeg (mmdet3d registry) for ShapeNet part (16
# categories, 50 parts): PointNet++ with the normals as input features and
# the category one-hot joining the last feature-propagation layer, as in the
# original part segmentation network. variant='ssg' (1.41 M parameters) or
# 'msg' (1.74 M); sa_cfgs / fp_channels override the widths. Its point
# operators (FPS, ball query, grouping, three-NN interpolation) run mmcv's
# CUDA kernels on a GPU and pure torch on the CPU.
model = dict(
    type='PointNet2PartSeg',
    variant='ssg',
    in_channels=6,  # xyz + normals
    data_preprocessor=dict(type='Det3DDataPreprocessor'),
    decode_head=dict(
        type='PartSegHead',
        channels=128,
        num_classes=50,
        dropout_ratio=0.5,
        loss_decode=dict(
            type='mmdet.CrossEntropyLoss',
            use_sigmoid=False,
            class_weight=None,
            loss_weight=1.0)))
