# Copyright (c) gap_mm contributors. All rights reserved.
"""The output layers of the heads OpenMMLab ships, which stay dense by
default.

An output layer turns a head's features into its predictions: class scores,
box deltas, objectness, centerness, mask logits, a segmentation's class map.
It is small, and pruning it costs accuracy for next to no saving, so every
sparsity hook leaves it out unless ``prune_output_layers=True`` (and names
it in the table it prints at the start).

The rule is a table, :data:`OUTPUT_LAYERS`: a head class name and the
attributes of that class that hold its output layers, written from the
sources of mmdet 3.3.0 (``mmdet/models/dense_heads``,
``mmdet/models/roi_heads``), mmseg's and mmdet3d's decode heads. A class is
matched by name anywhere in a module's MRO, so a subclass (``FSAFHead`` of
``RetinaHead``, a user's head derived from ``RPNHead``) inherits its base's
entry, and the entries of every base add up (``FCOSHead``: ``conv_cls`` and
``conv_reg`` of ``AnchorFreeHead``, its own ``conv_centerness``). An
attribute a head does not have (``fc_cls`` of a box head built with
``with_cls=False``) is skipped.

Of an attribute, the output layers are (:func:`output_weights`):

* a conv or linear layer: itself;
* a ``ModuleList``: the output layers of each entry (``YOLOXHead``'s
  ``multi_level_conv_cls`` holds one conv per level; ``SSDHead``'s
  ``cls_convs`` one stack per level, whose last conv predicts);
* any other module (an ``nn.Sequential``, mmdet's ``MLP``): its last conv
  or linear layer, in module order (the hidden layers before it stay
  prunable: ``DeformableDETRHead``'s ``reg_branches`` are 3-layer MLPs of
  which only the last predicts boxes).
"""
from collections import OrderedDict
from typing import Dict, Iterator, List, Tuple

from torch import nn

#: Head class name (anywhere in the MRO) -> attributes holding its output
#: layers. mmdet 3.3.0's dense heads, RoI heads, and the decode heads of
#: mmseg and mmdet3d.
OUTPUT_LAYERS: Dict[str, Tuple[str, ...]] = OrderedDict([
    # dense heads (mmdet/models/dense_heads)
    ('AnchorHead', ('conv_cls', 'conv_reg')),
    ('AnchorFreeHead', ('conv_cls', 'conv_reg')),
    ('RPNHead', ('rpn_cls', 'rpn_reg')),
    ('RetinaHead', ('retina_cls', 'retina_reg')),
    ('RetinaSepBNHead', ('retina_cls', 'retina_reg')),
    ('SABLRetinaHead', ('retina_cls', 'retina_bbox_reg', 'retina_bbox_cls')),
    ('FCOSHead', ('conv_centerness', )),
    ('ATSSHead', ('atss_cls', 'atss_reg', 'atss_centerness')),
    ('DDODHead', ('atss_cls', 'atss_reg', 'atss_iou')),
    ('GFLHead', ('gfl_cls', 'gfl_reg')),
    ('TOODHead', ('tood_cls', 'tood_reg', 'cls_prob_module',
                  'reg_offset_module')),
    ('VFNetHead', ('vfnet_cls', 'vfnet_reg', 'vfnet_reg_refine')),
    ('RTMDetHead', ('rtm_cls', 'rtm_reg', 'rtm_obj')),
    ('RTMDetInsHead', ('rtm_kernel', )),
    ('YOLOXHead', ('multi_level_conv_cls', 'multi_level_conv_reg',
                   'multi_level_conv_obj')),
    ('YOLOV3Head', ('convs_pred', )),
    ('YOLOFHead', ('cls_score', 'bbox_pred', 'object_pred')),
    ('SSDHead', ('cls_convs', 'reg_convs')),
    ('GuidedAnchorHead', ('conv_loc', 'conv_shape')),
    ('RepPointsHead', ('reppoints_cls_out', 'reppoints_pts_init_out',
                       'reppoints_pts_refine_out')),
    ('CenterNetHead', ('heatmap_head', 'wh_head', 'offset_head')),
    ('CornerHead', ('tl_heat', 'br_heat', 'tl_off', 'br_off', 'tl_emb',
                    'br_emb')),
    ('CentripetalHead', ('tl_guiding_shift', 'br_guiding_shift',
                         'tl_centripetal_shift', 'br_centripetal_shift')),
    ('YOLACTHead', ('conv_coeff', )),
    ('YOLACTProtonet', ('protonet', )),
    ('SOLOHead', ('conv_mask_list', 'conv_cls')),
    ('DecoupledSOLOHead', ('conv_mask_list_x', 'conv_mask_list_y')),
    ('SOLOV2Head', ('conv_kernel', )),
    ('CondInstBboxHead', ('controller', )),
    ('VLFusionModule', ('bbox_pred', 'centerness')),
    ('MaskFormerHead', ('cls_embed', 'mask_embed')),
    ('DETRHead', ('fc_cls', 'fc_reg')),
    ('DeformableDETRHead', ('cls_branches', 'reg_branches')),
    ('DDQDETRHead', ('aux_cls_branches', 'aux_reg_branches')),
    # RoI heads (mmdet/models/roi_heads)
    ('BBoxHead', ('fc_cls', 'fc_reg')),
    ('MultiInstanceBBoxHead', ('fc_cls_ref', 'fc_reg_ref')),
    ('SABLHead', ('fc_reg_cls', 'fc_reg_offset')),
    ('FCNMaskHead', ('conv_logits', )),
    ('CoarseMaskHead', ('fc_logits', )),
    ('MaskPointHead', ('fc_logits', )),
    ('MaskIoUHead', ('fc_mask_iou', )),
    ('FusedSemanticHead', ('conv_logits', )),
    ('GlobalContextHead', ('fc', )),
    ('GridHead', ('deconv2', )),
    # decode heads of mmseg and mmdet3d
    ('BaseDecodeHead', ('conv_seg', )),
    ('Base3DDecodeHead', ('conv_seg', )),
])

#: What counts as a layer inside an output attribute.
_LAYER_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


def _class_names(module: nn.Module) -> Tuple[str, ...]:
    return tuple(cls.__name__ for cls in type(module).__mro__)


def _last_layer(module: nn.Module) -> List[nn.Module]:
    if isinstance(module, nn.ModuleList):
        return [m for child in module for m in _last_layer(child)]
    if isinstance(module, _LAYER_TYPES):
        return [module]
    layers = [m for m in module.modules() if isinstance(m, _LAYER_TYPES)]
    return layers[-1:]


def output_layer_attrs(module: nn.Module) -> List[Tuple[str, str]]:
    """``(head class, attribute)`` of ``module``'s output layers by
    :data:`OUTPUT_LAYERS`, the attributes it has, each once."""
    found: List[Tuple[str, str]] = []
    seen = set()
    for cls_name in _class_names(module):
        for attr in OUTPUT_LAYERS.get(cls_name, ()):
            if attr not in seen and isinstance(
                    getattr(module, attr, None), nn.Module):
                seen.add(attr)
                found.append((cls_name, attr))
    return found


def output_weights(model: nn.Module) -> 'OrderedDict[int, str]':
    """The weights of ``model``'s output layers (see the module docstring).

    Returns:
        OrderedDict[int, str]: ``id`` of each weight parameter -> what it
        is, ``'<head class>.<attribute>'`` (``'RetinaHead.retina_cls'``),
        in model order. Keyed by the parameter's identity, so a layer that a
        head shares between entries (DETR-style heads reuse one predictor
        per decoder layer) is found under whichever name it is reached.
    """
    found: 'OrderedDict[int, str]' = OrderedDict()
    for _, module in _heads(model):
        for cls_name, attr in output_layer_attrs(module):
            for layer in _last_layer(getattr(module, attr)):
                weight = getattr(layer, 'weight', None)
                if isinstance(weight, nn.Parameter):
                    found.setdefault(id(weight), f'{cls_name}.{attr}')
    return found


def _heads(model: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if any(c in OUTPUT_LAYERS for c in _class_names(module)):
            yield name, module
