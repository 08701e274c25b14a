# Copyright (c) gap_mm contributors. All rights reserved.
"""Nine mmdet families, each as a user adds GaP to mmdet's own config, and
made tiny for the CPU: the model zoo that ``tests/test_det/
test_model_zoo.py`` trains and that ``docs/en/supported_models.md``
tabulates.

A family's user config is what a user writes (:func:`user_config`): mmdet's
config through ``mmdet::``, ``custom_imports=['gap_mm']``,
``GaPOptimWrapper`` and a ``GaPHook`` with the default options, appended
to the config's own ``custom_hooks`` where it has any (YOLOX, RTMDet, SSD).
:func:`make_tiny` then shrinks what the CPU cannot afford and nothing the
sparsity engine meets differently: the layer types, the frozen stages, the
heads, the losses, the optimizer and the hooks stay mmdet's; the widths,
the depths (ResNet-18 shapes for ResNet-50, 2 transformer layers), the
image size (64 px), the class count (the 6 generated shapes), the data
(random flips, no mosaic, mixup or crops) and the length (2 epochs of 3
iterations) shrink, and the test thresholds drop (``score_thr=0``) so that
CocoMetric has boxes to score after 6 iterations. Only SSD's VGG-16
backbone, which has no width option, is replaced (by a 3-stage ResNet-18
shape at 1/8 width), with its neck and anchors sized for 64 px.
"""
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config, ConfigDict

#: The generated shapes (tools/dataset_converters/gen_synthetic_coco.py).
CLASSES = ('circle', 'square', 'triangle', 'cross', 'ring', 'star')
#: Side of the tiny images, in pixels.
IMG_SIZE = 64
#: Images per batch, train and val images, and epochs of a tiny run (3
#: iterations per epoch).
BATCH_SIZE = 2
NUM_TRAIN = 6
NUM_VAL = 2
MAX_EPOCHS = 2
#: The GaP schedule of every family: each of the default 4 partitions
#: grown for 1 iteration, once (iterations 0-3), pruned back at 4, then 2
#: iterations of fine-tune.
GAP_SCHEDULE = dict(type='cyclic', period=1, num_rounds=1)


@dataclass(frozen=True)
class Family:
    """One mmdet model family of the zoo.

    Args:
        name (str): As the docs name it.
        config (str): mmdet's config, relative to ``mmdet::``.
        output (str): Regex (``re.search``) of the module names of the
            head's output layers (classification, regression, objectness,
            centerness, mask logits).
        ema (bool): Whether the config trains with an EMAHook.
        metrics (tuple[str]): CocoMetric's ``metric``.
        head_type (str, optional): The ``bbox_head`` type a user sets
            (``FixedSSDHead`` for SSD, see
            :mod:`gap_mm.models.dense_heads.fixed_ssd_head`).
        notes (str): What a user of this family should know.
    """
    name: str
    config: str
    output: str
    ema: bool = False
    metrics: Tuple[str, ...] = ('bbox', )
    head_type: Optional[str] = None
    notes: str = ''

    @property
    def key(self) -> str:
        """A short identifier (test ids, work folders)."""
        return self.name.lower().replace(' ', '_').replace('-', '_')


FAMILIES: List[Family] = [
    Family(
        'Faster R-CNN',
        'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
        output=r'(^rpn_head\.rpn_(cls|reg)|\.fc_(cls|reg))$'),
    Family(
        'Mask R-CNN',
        'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
        output=r'(^rpn_head\.rpn_(cls|reg)|\.fc_(cls|reg)|\.conv_logits)$',
        metrics=('bbox', 'segm')),
    Family(
        'Cascade R-CNN',
        'cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py',
        output=r'(^rpn_head\.rpn_(cls|reg)|\.fc_(cls|reg))$'),
    Family(
        'RetinaNet',
        'retinanet/retinanet_r50_fpn_1x_coco.py',
        output=r'^bbox_head\.retina_(cls|reg)$'),
    Family(
        'FCOS',
        'fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
        output=r'^bbox_head\.conv_(cls|reg|centerness)$'),
    Family(
        'SSD300',
        'ssd/ssd300_coco.py',
        output=r'^bbox_head\.(cls|reg)_convs\.\d+\.\d+$',
        head_type='FixedSSDHead',
        notes="`bbox_head=dict(type='FixedSSDHead')`: mmdet 3.3.0 cannot "
        'predict with its `SSDHead` (open-mmlab/mmdetection#11780), with '
        'or without gap_mm; append GaPHook to the config\'s '
        '`custom_hooks`'),
    Family(
        'YOLOX-S',
        'yolox/yolox_s_8xb8-300e_coco.py',
        output=r'^bbox_head\.multi_level_conv_(cls|reg|obj)\.\d+$',
        ema=True,
        notes='append GaPHook to the config\'s `custom_hooks` (EMAHook, '
        'YOLOXModeSwitchHook, SyncNormHook)'),
    Family(
        'RTMDet-tiny',
        'rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
        output=r'^bbox_head\.rtm_(cls|reg)\.\d+$',
        ema=True,
        notes='append GaPHook to the config\'s `custom_hooks` (EMAHook, '
        'PipelineSwitchHook); the 5x5 depthwise convs of CSPNeXt are '
        'pruned, the head convs its 3 levels share once'),
    Family(
        'DETR',
        'detr/detr_r50_8xb2-150e_coco.py',
        output=r'^bbox_head\.fc_(cls|reg)$',
        notes='AdamW'),
]


def user_config(family: Family) -> str:
    """The config text a user writes to train ``family`` with GaP at the
    default options."""
    base_hooks = '_base_.custom_hooks + ' if _has_own_hooks(family) else ''
    head = (f"model = dict(bbox_head=dict(type='{family.head_type}'))\n"
            if family.head_type else '')
    return (f"_base_ = 'mmdet::{family.config}'\n"
            "custom_imports = dict(imports=['gap_mm'], "
            'allow_failed_imports=False)\n'
            f'{head}'
            "optim_wrapper = dict(type='GaPOptimWrapper')\n"
            f'custom_hooks = {base_hooks}[\n'
            f"    dict(type='GaPHook', schedule={GAP_SCHEDULE!r})\n"
            ']\n')


def _has_own_hooks(family: Family) -> bool:
    return family.name in ('SSD300', 'YOLOX-S', 'RTMDet-tiny')


# ------------------------------------------------------------- tiny models
def _tiny_resnet(backbone: ConfigDict, **kwargs) -> None:
    """ResNet-50 -> a ResNet-18 shape at 1/8 width (8-64 channels), no
    pretrained weights; frozen stages, norms and style as configured."""
    backbone.update(depth=18, base_channels=8, init_cfg=None, **kwargs)


def _tiny_fpn(model: ConfigDict, out: int = 16) -> None:
    model.neck.update(in_channels=[8, 16, 32, 64], out_channels=out)


def _tiny_rcnn(model: ConfigDict) -> None:
    _tiny_resnet(model.backbone)
    _tiny_fpn(model)
    model.rpn_head.update(in_channels=16, feat_channels=16)
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = 16
    heads = roi.bbox_head if isinstance(roi.bbox_head, list) else [
        roi.bbox_head
    ]
    for head in heads:
        head.update(
            in_channels=16, fc_out_channels=32, num_classes=len(CLASSES))
    if 'mask_head' in roi:
        roi.mask_roi_extractor.out_channels = 16
        roi.mask_head.update(
            in_channels=16, conv_out_channels=16, num_classes=len(CLASSES))
    model.test_cfg.rcnn.score_thr = 0.0


def _tiny_retinanet(model: ConfigDict) -> None:
    _tiny_resnet(model.backbone)
    _tiny_fpn(model)
    model.bbox_head.update(
        in_channels=16, feat_channels=16, num_classes=len(CLASSES))
    model.test_cfg.score_thr = 0.0


def _tiny_fcos(model: ConfigDict) -> None:
    _tiny_resnet(model.backbone)
    # the head's GroupNorm has 32 groups
    _tiny_fpn(model, out=32)
    model.bbox_head.update(
        in_channels=32, feat_channels=32, num_classes=len(CLASSES))
    model.test_cfg.score_thr = 0.0


def _tiny_ssd(model: ConfigDict) -> None:
    # SSDVGG has no width option: a 3-stage ResNet-18 shape at 1/8 width
    # gives the two input levels (strides 8 and 16) and SSDNeck adds two
    # (32 and 64): 8, 4, 2 and 1 cells at 64 px.
    model.backbone = ConfigDict(
        type='ResNet',
        depth=18,
        base_channels=8,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(1, 2),
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None)
    model.neck.update(
        in_channels=(16, 32),
        out_channels=(16, 32, 16, 16),
        level_strides=(2, 2),
        level_paddings=(1, 1))
    model.bbox_head.update(
        in_channels=(16, 32, 16, 16), num_classes=len(CLASSES))
    model.bbox_head.anchor_generator = ConfigDict(
        type='SSDAnchorGenerator',
        scale_major=False,
        strides=[8, 16, 32, 64],
        ratios=[[2], [2, 3], [2, 3], [2]],
        min_sizes=[6, 13, 26, 45],
        max_sizes=[13, 26, 45, 64])
    model.test_cfg.score_thr = 0.0


def _tiny_yolox(model: ConfigDict) -> None:
    model.backbone.widen_factor = 0.125  # 8-128 channels
    model.neck.update(in_channels=[32, 64, 128], out_channels=16)
    model.bbox_head.update(
        in_channels=16, feat_channels=16, num_classes=len(CLASSES))
    for aug in model.data_preprocessor.batch_augments:
        aug.random_size_range = (IMG_SIZE, IMG_SIZE)
    model.test_cfg.score_thr = 0.0


def _tiny_rtmdet(model: ConfigDict) -> None:
    model.backbone.update(widen_factor=0.125, init_cfg=None)
    model.neck.update(in_channels=[32, 64, 128], out_channels=16)
    model.bbox_head.update(
        in_channels=16, feat_channels=16, num_classes=len(CLASSES))
    # after 6 iterations from scratch the distances it regresses may be
    # negative; keep those boxes too, so that CocoMetric has predictions
    model.test_cfg.update(score_thr=0.0, min_bbox_size=-1)


def _tiny_detr(model: ConfigDict) -> None:
    _tiny_resnet(model.backbone)
    dims = 32
    model.neck.update(in_channels=[64], out_channels=dims)
    for part in ('encoder', 'decoder'):
        model[part].num_layers = 2
        layer = model[part].layer_cfg
        for attn in ('self_attn_cfg', 'cross_attn_cfg'):
            if attn in layer:
                layer[attn].embed_dims = dims
        layer.ffn_cfg.update(embed_dims=dims, feedforward_channels=64)
    model.positional_encoding.num_feats = dims // 2
    model.bbox_head.update(embed_dims=dims, num_classes=len(CLASSES))
    # DETRHead (softmax) keeps the best max_per_img of the queries
    model.num_queries = 20
    model.test_cfg.max_per_img = 20


_TINY_MODELS = {
    'Faster R-CNN': _tiny_rcnn,
    'Mask R-CNN': _tiny_rcnn,
    'Cascade R-CNN': _tiny_rcnn,
    'RetinaNet': _tiny_retinanet,
    'FCOS': _tiny_fcos,
    'SSD300': _tiny_ssd,
    'YOLOX-S': _tiny_yolox,
    'RTMDet-tiny': _tiny_rtmdet,
    'DETR': _tiny_detr,
}


# --------------------------------------------------------------- tiny data
def _pipelines(masks: bool) -> Tuple[list, list]:
    """Train and test pipelines at :data:`IMG_SIZE`: the family's random
    augmentations (mosaic, mixup, crops, photometric) are left out, a
    random flip stays."""
    annotations = dict(type='LoadAnnotations', with_bbox=True)
    if masks:
        annotations['with_mask'] = True
    scale = (IMG_SIZE, IMG_SIZE)
    train = [
        dict(type='LoadImageFromFile'), annotations,
        dict(type='Resize', scale=scale, keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs')
    ]
    test = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=scale, keep_ratio=True), annotations,
        dict(
            type='PackDetInputs',
            meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                       'scale_factor'))
    ]
    return train, test


def tiny_data(family: Family, data_root: str) -> Dict[str, dict]:
    """Data loaders and evaluators for the generated shapes under
    ``data_root`` (COCO layout), replacing the family's COCO ones."""
    train_pipeline, test_pipeline = _pipelines('segm' in family.metrics)
    metainfo = dict(classes=CLASSES)
    root = data_root.rstrip('/') + '/'

    def dataset(split: str, pipeline: list, **kwargs) -> dict:
        return dict(
            _delete_=True,
            type='CocoDataset',
            data_root=root,
            metainfo=metainfo,
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'{split}/'),
            pipeline=pipeline,
            # serializing runs gc.collect(), seconds with mmdet imported
            serialize_data=False,
            **kwargs)

    train_set = dataset(
        'train2017',
        train_pipeline,
        filter_cfg=dict(filter_empty_gt=True, min_size=1))
    if family.name == 'YOLOX-S':
        # YOLOXModeSwitchHook needs mmdet's MultiImageMixDataset (in a run
        # this short it switches mosaic and mixup off from the first epoch)
        train_set.update(pipeline=train_pipeline[:2])
        del train_set['_delete_']
        train_set = dict(
            _delete_=True,
            type='MultiImageMixDataset',
            dataset=train_set,
            pipeline=train_pipeline[2:])
    loader = dict(num_workers=0, persistent_workers=False, pin_memory=False)
    evaluator = dict(
        _delete_=True,
        type='CocoMetric',
        ann_file=osp.join(root, 'annotations', 'instances_val2017.json'),
        metric=list(family.metrics))
    test_loader = dict(
        batch_size=BATCH_SIZE,
        **loader,
        drop_last=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dataset('val2017', test_pipeline, test_mode=True))
    return dict(
        train_dataloader=dict(
            batch_size=BATCH_SIZE,
            **loader,
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_sampler=None,
            dataset=train_set),
        val_dataloader=test_loader,
        test_dataloader=test_loader,
        val_evaluator=evaluator,
        test_evaluator=evaluator)


def make_tiny(cfg: Config, family: Family, data_root: str,
              work_dir: str) -> Config:
    """Shrink a family's user config (modified in place) for the CPU.

    Args:
        cfg (Config): :func:`user_config` of ``family``, loaded.
        family (Family): The family.
        data_root (str): The generated shapes, COCO layout, with at least
            :data:`NUM_TRAIN` train and :data:`NUM_VAL` val images.
        work_dir (str): The run's work folder.

    Returns:
        Config: ``cfg``.
    """
    _TINY_MODELS[family.name](cfg.model)
    cfg.merge_from_dict(tiny_data(family, data_root))
    cfg.train_cfg = ConfigDict(
        type='EpochBasedTrainLoop', max_epochs=MAX_EPOCHS)
    # no validation while training: the test loop evaluates the checkpoint
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = ConfigDict(
        type='CheckpointHook', interval=1, max_keep_ckpts=-1)
    cfg.default_hooks.logger = ConfigDict(type='LoggerHook', interval=1)
    cfg.randomness = ConfigDict(seed=0)
    cfg.work_dir = work_dir
    cfg.auto_scale_lr = ConfigDict(enable=False, base_batch_size=16)
    return cfg
