# Copyright (c) gap_mm contributors. All rights reserved.
"""Layers whose output channels are tied to other layers' channels.

Pruning a filter of such a layer leaves the channel alive through its
partner (a residual sum, or a head shared across FPN levels), so structured
(filter-wise) pruning must leave these layers out. Found from the module
structure of ResNet-style backbones and FPN necks: classes are matched by
name anywhere in their MRO, so mmdet's, mmpretrain's and torchvision's
blocks and their subclasses (ResNeXt's Bottleneck) all count.
"""
from collections import OrderedDict
from typing import Dict, Iterator, Tuple

from torch import nn

#: The layers whose weights :func:`coupled_filter_params` names: convs
#: (transposed ones too) and linear layers.
_LAYER_TYPES = (nn.modules.conv._ConvNd, nn.Linear)

#: Residual block class name -> the conv whose output the residual sum adds.
RESIDUAL_BLOCKS = {'BasicBlock': 'conv2', 'Bottleneck': 'conv3'}


def _class_names(module: nn.Module) -> Tuple[str, ...]:
    return tuple(cls.__name__ for cls in type(module).__mro__)


def _conv_weights(module: nn.Module, prefix: str) -> Iterator[str]:
    """Names of the conv / linear weights in ``module`` (itself included)."""
    for sub_name, sub in module.named_modules():
        if isinstance(sub, _LAYER_TYPES) and isinstance(
                getattr(sub, 'weight', None), nn.Parameter):
            yield '.'.join(p for p in (prefix, sub_name, 'weight') if p)


def _join(*parts: str) -> str:
    return '.'.join(p for p in parts if p)


def _block_output(module: nn.Module) -> str:
    for cls_name in _class_names(module):
        if cls_name in RESIDUAL_BLOCKS:
            return RESIDUAL_BLOCKS[cls_name]
    return ''


def coupled_filter_params(model: nn.Module) -> Dict[str, str]:
    """The weights whose output filters are tied by the model's structure,
    with the reason for each.

    * a residual block (``BasicBlock``, ``Bottleneck``): its last conv and
      every conv of its ``downsample`` (the residual sum adds their
      outputs);
    * a ResNet whose first block has an identity shortcut (ResNet-18/34):
      the stem's last conv, whose output that sum adds;
    * an ``FPN``: its lateral convs (summed top-down) and output convs
      (feeding heads shared across levels).

    Returns:
        dict[str, str]: Parameter name -> why it is coupled, in model
        order.
    """
    found: Dict[str, str] = OrderedDict()
    for name, module in model.named_modules():
        last = _block_output(module)
        if last and isinstance(getattr(module, last, None), nn.Module):
            why = f'the residual sum of {name or type(module).__name__}'
            for weight in _conv_weights(
                    getattr(module, last), _join(name, last)):
                found.setdefault(weight, why)
            downsample = getattr(module, 'downsample', None)
            if isinstance(downsample, nn.Module):
                for weight in _conv_weights(downsample,
                                            _join(name, 'downsample')):
                    found.setdefault(weight, why)
        names = _class_names(module)
        if 'ResNet' in names:
            _resnet_stem(module, name, found)
        if 'FPN' in names:
            for attr, why in (('lateral_convs', 'the FPN top-down sum'),
                              ('fpn_convs', 'heads shared across FPN '
                               'levels')):
                sub = getattr(module, attr, None)
                if isinstance(sub, nn.Module):
                    for weight in _conv_weights(sub, _join(name, attr)):
                        found.setdefault(weight, why)
    return found


def _resnet_stem(module: nn.Module, name: str, found: Dict[str, str]) -> None:
    layers = getattr(module, 'res_layers', None) or ['layer1']
    first_layer = getattr(module, layers[0], None)
    if not isinstance(first_layer, nn.Sequential) or not len(first_layer):
        return
    block = first_layer[0]
    if not _block_output(block) or getattr(block, 'downsample',
                                           None) is not None:
        return
    stem = getattr(module, 'stem', None) if getattr(
        module, 'deep_stem', False) else getattr(module, 'conv1', None)
    if not isinstance(stem, nn.Module):
        return
    prefix = _join(name,
                   'stem' if getattr(module, 'deep_stem', False) else 'conv1')
    weights = list(_conv_weights(stem, prefix))
    if weights:
        found.setdefault(
            weights[-1],
            f'the identity shortcut of {_join(name, layers[0])}.0')
