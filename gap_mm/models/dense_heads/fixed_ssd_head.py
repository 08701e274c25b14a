# Copyright (c) gap_mm contributors. All rights reserved.
"""``FixedSSDHead``: mmdet's ``SSDHead`` with what mmdet 3.3.0's prediction
reads.

mmdet 3.3.0's ``BaseDenseHead._predict_by_feat_single`` asks
``getattr(self.loss_cls, 'custom_cls_channels', False)`` (for v3det's custom
classification losses). ``SSDHead`` computes its classification loss inline
(cross-entropy with hard negative mining) and, unlike every other anchor
head, skips ``AnchorHead.__init__``, so it has no ``loss_cls``: every SSD
prediction (``tools/test.py``, the validation loop during training,
``DetInferencer``) stops with ``AttributeError: 'SSDHead' object has no
attribute 'loss_cls'`` (open-mmlab/mmdetection#11063, #11305, #11780; the
fix proposed upstream, #11524, is not merged).

``FixedSSDHead`` is that head with ``loss_cls = None``: the ``getattr``
then answers False and the prediction goes on to ``SSDHead``'s own softmax
over the classes and the background, exactly as mmdet < 3.3 did. It has the
same layers and parameter names as ``SSDHead``, so checkpoints of either
load into the other. It is a subclass chosen by the config
(``bbox_head=dict(type='FixedSSDHead', ...)``), not a change to mmdet's
class: mmdet itself and every other config are left as they are.
"""
from mmdet.models.dense_heads import SSDHead
from mmdet.registry import MODELS


@MODELS.register_module()
class FixedSSDHead(SSDHead):
    """mmdet's :class:`~mmdet.models.dense_heads.SSDHead`, evaluable under
    mmdet 3.3.0.

    It takes ``SSDHead``'s arguments and trains and predicts exactly as it
    does; the only addition is :attr:`loss_cls`, which mmdet 3.3.0's
    ``BaseDenseHead._predict_by_feat_single`` reads and ``SSDHead`` lacks.

    Examples:
        >>> _base_ = 'mmdet::ssd/ssd300_coco.py'
        >>> custom_imports = dict(imports=['gap_mm'],
        >>>                       allow_failed_imports=False)
        >>> model = dict(bbox_head=dict(type='FixedSSDHead'))
    """

    #: SSD has no classification loss module (its loss is computed inline
    #: with hard negative mining); None makes mmdet's
    #: ``getattr(self.loss_cls, 'custom_cls_channels', False)`` False.
    loss_cls = None
