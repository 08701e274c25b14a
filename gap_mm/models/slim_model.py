# Copyright (c) gap_mm contributors. All rights reserved.
"""``SlimModel``: build a model of a config at the widths a slimming export
left it, so that its slimmed checkpoint loads and the ordinary test tools
evaluate it.

Written by ``tools/model_converters/slim_model.py`` into the slimmed
config, e.g.::

    model = dict(
        type='SlimModel',
        model=dict(type='RetinaNet', ...),   # the original model, unchanged
        channels={'backbone.layer1.0.conv1': 21, ...},
        biased=['bbox_head.retina_cls'])

It is a builder, not a wrapper: what it returns is the original model's
class (a ``RetinaNet`` above), so ``tools/test.py``, the data preprocessor
and every metric see the model they know.
"""
from typing import Mapping, Optional, Sequence

from mmengine.registry import MODELS
from torch import nn

from gap_mm.errors import GaPConfigError
from gap_mm.export.slim import resize_to


@MODELS.register_module()
def SlimModel(model: dict,
              channels: Mapping[str, int],
              biased: Optional[Sequence[str]] = None,
              removed_blocks: Optional[Sequence[str]] = None) -> nn.Module:
    """Build ``model`` and shrink its channel groups to ``channels``.

    Args:
        model (dict): The original model's config.
        channels (dict[str, int]): Producer (conv / linear name) -> its
            number of output channels in the slimmed model.
        biased (Sequence[str], optional): Consumers that received a bias
            from folded constant channels.
        removed_blocks (Sequence[str], optional): Residual blocks replaced
            by ``nn.Identity`` (SCS's block gates that were off).

    Returns:
        nn.Module: The original model's class, at the slimmed widths
        (weights as built; load the slimmed checkpoint into it).

    Raises:
        GaPConfigError: If ``channels`` names a layer that is not a
            slimmable producer or gives a width out of range.
    """
    if not isinstance(model, Mapping) or 'type' not in model:
        raise GaPConfigError(
            f'SlimModel needs model=dict(type=..., ...), the original '
            f'model config; got {model!r}')
    if not isinstance(channels, Mapping):
        raise GaPConfigError(f'SlimModel channels must be a dict of '
                             f'layer name -> width, got {channels!r}')
    built = MODELS.build(model)
    return resize_to(built, dict(channels), tuple(biased or ()),
                     tuple(removed_blocks or ()))
