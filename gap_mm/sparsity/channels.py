# Copyright (c) gap_mm contributors. All rights reserved.
"""Channel groups: where a model's channels can be removed without touching
anything else.

A *channel group* is a conv (or linear) *producer*, the norm layer and
element-wise activation after it, and the *consumers* that read those
channels as their input channels, and nothing more: no residual sum, no
concatenation, no head shared with another layer's channels. Found from the
module structure, by class name anywhere in the MRO (mmdet's, mmpretrain's
and torchvision's blocks and their subclasses count), see
:data:`GROUP_RULES`:

* inside a residual block: ``conv1`` (and ``conv2`` of a ``Bottleneck``),
  whose channels the block's next conv alone reads (the block's last conv
  and its downsample feed the residual sum and are never a producer);
* RetinaNet's head towers: every tower conv but the last feeds the next;
  the last feeds ``retina_cls`` / ``retina_reg``;
* the shared fully-connected layers of a two-stage detector's box head
  (``Shared2FCBBoxHead``): ``shared_fcs.0`` feeds ``shared_fcs.1``, which
  feeds ``fc_cls`` and ``fc_reg``;
* a plain ``nn.Sequential`` of conv-norm-ReLU ``ConvModule`` layers
  (PointNet++'s shared MLPs): every conv but the last feeds the next.

Filter-wise GReg removes a pruned filter's whole channel through these
groups (the norm's scale and shift go with the filter), and
:mod:`gap_mm.export.slim` cuts the channels out.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

Activation = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ChannelGroup:
    """Channels that can be removed together (see the module docstring).

    Attributes:
        producer (str): The conv / linear whose output channels they are.
        consumers (list[str]): The convs / linears reading them as input
            channels (dim 1 of their weight).
        norm (str, optional): The batch norm between them, if any.
        act (callable, optional): The element-wise activation after it.
    """
    producer: str
    consumers: List[str]
    norm: Optional[str] = None
    act: Optional[Activation] = field(default=None, repr=False)


def _class_names(module: nn.Module) -> Tuple[str, ...]:
    return tuple(cls.__name__ for cls in type(module).__mro__)


def _join(*parts: str) -> str:
    return '.'.join(p for p in parts if p)


def _plain(module: Optional[nn.Module]) -> bool:
    """A dense conv / linear whose channel dims can be sliced: a linear
    layer, or a 2d conv of one group whose weight is ``(out, in, k, k)``.
    A transposed conv (``(in, out, k, k)``) or a grouped conv is not."""
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, nn.Conv2d) and module.groups == 1
            and type(module).forward is nn.Conv2d.forward)


#: Why a transposed conv is never part of a channel group.
TRANSPOSED_WHY = ('a transposed conv, whose weight is (in, out, ...): '
                  'slimming does not cut its channels')


def _why_not(default: str, *modules: Optional[nn.Module]) -> str:
    """Why a chain is skipped: :data:`TRANSPOSED_WHY` when one of
    ``modules`` is a transposed conv, else ``default``."""
    if any(
            isinstance(m, nn.modules.conv._ConvTransposeNd)
            for m in modules):
        return TRANSPOSED_WHY
    return default


def _relu(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x)


def _block_groups(name: str, block: nn.Module,
                  skipped: Dict[str, str]) -> Iterator[ChannelGroup]:
    """``BasicBlock`` / ``Bottleneck`` (mmdet, mmpretrain, torchvision)."""
    convs = ['conv1', 'conv2'] if 'BasicBlock' in _class_names(block) \
        else ['conv1', 'conv2', 'conv3']
    if getattr(block, 'with_plugins', False) or getattr(
            block, 'with_dcn', False):
        for conv in convs[:-1]:
            skipped[_join(name, conv)] = ('a block with plugins or '
                                          'deformable convs')
        return
    act = getattr(block, 'relu', None)
    if not isinstance(act, nn.ReLU):
        act = None
    for i, conv in enumerate(convs[:-1], start=1):
        producer, consumer = getattr(block, conv,
                                     None), getattr(block, convs[i], None)
        norm = getattr(block, f'norm{i}', None)
        norm_name = getattr(block, f'norm{i}_name', None) or f'bn{i}'
        if norm is None:
            norm = getattr(block, f'bn{i}', None)
        if act is None or not _plain(producer) or not _plain(consumer):
            skipped[_join(name, conv)] = _why_not(
                'its block is not a plain conv-norm-ReLU chain', producer,
                consumer)
            continue
        yield ChannelGroup(
            producer=_join(name, conv),
            consumers=[_join(name, convs[i])],
            norm=_join(name, norm_name) if norm is not None else None,
            act=_relu)


def _conv_module_parts(module: nn.Module) -> Optional[Tuple[str, bool]]:
    """(norm attribute or '', has a ReLU) of an mmcv ``ConvModule`` in
    conv-norm-act order with a batch norm or none, else None."""
    if 'ConvModule' not in _class_names(module) or tuple(
            getattr(module, 'order', ())) != ('conv', 'norm', 'act'):
        return None
    if getattr(module, 'with_activation', False) and not isinstance(
            getattr(module, 'activate', None), nn.ReLU):
        return None
    norm = getattr(module, 'norm_name', None) if getattr(
        module, 'with_norm', False) else ''
    # a removed channel must leave the other channels' values unchanged:
    # a batch norm is per channel, a group or layer norm mixes them
    if norm and not isinstance(
            getattr(module, norm, None), nn.modules.batchnorm._BatchNorm):
        return None
    return norm, bool(getattr(module, 'with_activation', False))


def _retina_groups(name: str, head: nn.Module,
                   skipped: Dict[str, str]) -> Iterator[ChannelGroup]:
    """RetinaNet's classification and regression towers."""
    for tower, out in (('cls_convs', 'retina_cls'), ('reg_convs',
                                                     'retina_reg')):
        convs = getattr(head, tower, None)
        if not isinstance(convs, nn.ModuleList) or not len(convs):
            continue
        for i, module in enumerate(convs):
            producer = _join(name, tower, str(i), 'conv')
            parts = _conv_module_parts(module)
            nxt = (_join(name, tower, str(i + 1), 'conv'), convs[i + 1].conv) \
                if i + 1 < len(convs) else (_join(name, out),
                                            getattr(head, out, None))
            if parts is None or not _plain(module.conv) or not _plain(
                    nxt[1]) or (i + 1 < len(convs)
                                and _conv_module_parts(convs[i + 1]) is None):
                skipped[producer] = _why_not(
                    'not a conv-norm-ReLU ConvModule chain',
                    getattr(module, 'conv', None), nxt[1])
                continue
            norm, relu = parts
            yield ChannelGroup(
                producer=producer,
                consumers=[nxt[0]],
                norm=_join(name, tower, str(i), norm) if norm else None,
                act=_relu if relu else None)


def _shared_fc_groups(name: str, head: nn.Module,
                      skipped: Dict[str, str]) -> Iterator[ChannelGroup]:
    """``Shared2FCBBoxHead``: two shared FCs, then ``fc_cls`` / ``fc_reg``."""
    fcs = getattr(head, 'shared_fcs', None)
    if not isinstance(fcs, nn.ModuleList) or len(fcs) < 1:
        return
    if any(
            getattr(head, attr, 0)
            for attr in ('num_shared_convs', 'num_cls_convs', 'num_cls_fcs',
                         'num_reg_convs', 'num_reg_fcs')):
        for i in range(len(fcs)):
            skipped[_join(
                name, 'shared_fcs',
                str(i))] = ('a box head with branch-specific convs or FCs')
        return
    outs = [
        attr for attr, flag in (('fc_cls', 'with_cls'), ('fc_reg', 'with_reg'))
        if getattr(head, flag, False)
    ]
    for i, fc in enumerate(fcs):
        consumers = [_join(name, 'shared_fcs', str(i + 1))
                     ] if i + 1 < len(fcs) else [_join(name, o) for o in outs]
        mods = [fcs[i + 1]
                ] if i + 1 < len(fcs) else [getattr(head, o) for o in outs]
        if not consumers or not _plain(fc) or not all(
                isinstance(m, nn.Linear) for m in mods):
            skipped[_join(name, 'shared_fcs',
                          str(i))] = ('its consumers are not linear layers')
            continue
        yield ChannelGroup(
            producer=_join(name, 'shared_fcs', str(i)),
            consumers=consumers,
            act=_relu)


def _sequential_groups(name: str, seq: nn.Module,
                       skipped: Dict[str, str]) -> Iterator[ChannelGroup]:
    """An ``nn.Sequential`` of conv-norm-ReLU ``ConvModule`` layers
    (PointNet++'s shared MLPs): a Sequential hands each output to the next
    module alone, so every conv but the last feeds only the next one's. The
    last one's output leaves the Sequential and is no producer."""
    if type(seq) is not nn.Sequential or len(seq) < 2:
        return
    children = list(seq.named_children())
    if not all(_conv_module_parts(m) is not None for _, m in children):
        return
    for (attr, module), (next_attr, nxt) in zip(children, children[1:]):
        producer = _join(name, attr, 'conv')
        norm, relu = _conv_module_parts(module)
        if not relu or not _plain(module.conv) or not _plain(nxt.conv):
            skipped[producer] = _why_not(
                'not a conv-norm-ReLU ConvModule chain', module.conv,
                nxt.conv)
            continue
        yield ChannelGroup(
            producer=producer,
            consumers=[_join(name, next_attr, 'conv')],
            norm=_join(name, attr, norm) if norm else None,
            act=_relu)


#: Class name (anywhere in the MRO) -> the groups inside such a module.
GROUP_RULES = OrderedDict([
    ('BasicBlock', _block_groups),
    ('Bottleneck', _block_groups),
    ('RetinaHead', _retina_groups),
    ('Shared2FCBBoxHead', _shared_fc_groups),
    ('Sequential', _sequential_groups),
])


def find_channel_groups(
        model: nn.Module) -> Tuple[List[ChannelGroup], Dict[str, str]]:
    """The channel groups of ``model``, in model order.

    Returns:
        tuple: ``(groups, skipped)``: the :class:`ChannelGroup` list, and
        the producers a rule matched but could not slim, with the reason.
    """
    groups: List[ChannelGroup] = []
    skipped: Dict[str, str] = OrderedDict()
    for name, module in model.named_modules():
        names = _class_names(module)
        for cls_name, rule in GROUP_RULES.items():
            if cls_name in names:
                groups.extend(rule(name, module, skipped))
                break
    return groups, skipped


def channel_followers(
    model: nn.Module,
    groups: Optional[List[ChannelGroup]] = None
) -> Dict[str, List[Tuple[str, nn.Parameter]]]:
    """What carries a producer's channel on besides its filter: the scale
    and shift of the norm layer after it, or its own bias when it has no
    norm layer. Zeroing them with the filter makes the channel exactly 0
    (after a ReLU too), as if it were removed.

    Args:
        model (nn.Module): The model.
        groups (list[ChannelGroup], optional): Its channel groups; found
            when not given.

    Returns:
        dict: Producer weight name (``'a.conv1.weight'``) -> the
        ``(name, parameter)`` pairs indexed by its output channel.
    """
    if groups is None:
        groups = find_channel_groups(model)[0]
    modules = dict(model.named_modules())
    out: Dict[str, List[Tuple[str, nn.Parameter]]] = OrderedDict()
    for group in groups:
        owner = group.norm if group.norm else group.producer
        module = modules[owner]
        params = [(_join(owner, attr), getattr(module, attr))
                  for attr in (('weight',
                                'bias') if group.norm else ('bias', ))
                  if isinstance(getattr(module, attr, None), nn.Parameter)]
        if params:
            out[_join(group.producer, 'weight')] = params
    return out
