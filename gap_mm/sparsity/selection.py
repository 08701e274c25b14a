# Copyright (c) gap_mm contributors. All rights reserved.
"""Choose which parameters of a model are prunable."""
import re
from collections import OrderedDict
from typing import (Dict, Iterable, List, Mapping, NamedTuple, Optional,
                    Sequence, Tuple, Type, Union)

from torch import nn

from gap_mm.errors import GaPConfigError
from .output_layers import output_weights

#: Layer types whose weights are prunable unless a config says otherwise: a
#: conv's, a transposed conv's and a linear layer's ``weight``, and the q, k
#: and v projections of an ``nn.MultiheadAttention`` (its ``out_proj`` is a
#: Linear of its own).
DEFAULT_PRUNABLE_TYPES: Tuple[Type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
    nn.ConvTranspose3d, nn.Linear, nn.MultiheadAttention)

#: The separate q, k and v projections of an ``nn.MultiheadAttention`` whose
#: key or value width differs from its query's.
MHA_SEPARATE_WEIGHTS = ('q_proj_weight', 'k_proj_weight', 'v_proj_weight')

#: Why a frozen weight is never pruned.
FROZEN_WHY = ('frozen (requires_grad=False): it gets no gradient, so a '
              'pruned weight could never grow back')


class WeightLayout(NamedTuple):
    """How a prunable weight is laid out.

    Attributes:
        blocks (int): The separate weights stacked along dim 0, each pruned
            to its own count: 3 for the packed ``in_proj_weight`` of an
            ``nn.MultiheadAttention`` (q, k, v), else 1.
        out_dim (int): The dim of the output channels: 0 for a conv or
            linear weight ``(out, in, *kernel)``, 1 for a transposed conv's
            ``(in, out / groups, *kernel)``.
    """
    blocks: int = 1
    out_dim: int = 0

    @property
    def in_dim(self) -> int:
        """The dim of the input channels (an N:M pattern runs along it)."""
        return 1 - self.out_dim


#: The layout of a plain conv or linear weight.
PLAIN_LAYOUT = WeightLayout()


def layer_weights(
        module: nn.Module) -> List[Tuple[str, nn.Parameter, WeightLayout]]:
    """The prunable weights a layer holds: ``(attribute, parameter,
    layout)``.

    An ``nn.MultiheadAttention`` holds its packed ``in_proj_weight`` (3
    blocks, q, k and v) or, when its key or value width differs, the three
    separate ``q/k/v_proj_weight``; a transposed conv its ``weight`` with
    the output channels on dim 1; any other layer its ``weight``.
    """
    if isinstance(module, nn.MultiheadAttention):
        packed = getattr(module, 'in_proj_weight', None)
        if isinstance(packed, nn.Parameter):
            return [('in_proj_weight', packed, WeightLayout(blocks=3))]
        return [(attr, getattr(module, attr), PLAIN_LAYOUT)
                for attr in MHA_SEPARATE_WEIGHTS
                if isinstance(getattr(module, attr, None), nn.Parameter)]
    weight = getattr(module, 'weight', None)
    if not isinstance(weight, nn.Parameter):
        return []
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return [('weight', weight, WeightLayout(out_dim=1))]
    return [('weight', weight, PLAIN_LAYOUT)]


RegexList = Optional[Union[str, Sequence[str]]]


def _as_list(patterns: RegexList) -> list:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        return [patterns]
    return list(patterns)


def compile_regexes(patterns: Iterable[str], option: str) -> list:
    """Compile the regexes of a config option.

    Raises:
        GaPConfigError: Naming the option and the pattern that does not
            compile, with the reason from :mod:`re`.
    """
    compiled = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise GaPConfigError(f'{option} entries must be regex strings, '
                                 f'but got {pattern!r}')
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise GaPConfigError(
                f'{option} regex {pattern!r} is not a valid regular '
                f'expression: {err}') from err
    return compiled


def resolve_module_types(
    module_types: Optional[Sequence[Union[str, Type[nn.Module]]]]
) -> Optional[Tuple[Type[nn.Module], ...]]:
    """Layer types from a config's ``module_types``.

    An entry is an ``nn.Module`` subclass or a name: a ``torch.nn`` layer
    (``'Conv2d'``, ``'Linear'``), else any layer in MMEngine's ``MODELS``
    registry, which holds mmcv's (``'DCNv2'``, ``'ConvWS'``, ...) once mmcv
    is imported. Subclasses of a type count as that type.

    Returns:
        tuple[type] | None: None for None (the defaults).

    Raises:
        GaPConfigError: For a name that is no layer type.
    """
    if module_types is None:
        return None
    if isinstance(module_types, (str, type)):
        module_types = [module_types]
    resolved = []
    for item in module_types:
        cls = item
        if isinstance(item, str):
            cls = getattr(nn, item, None)
            if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
                from mmengine.registry import MODELS
                try:
                    import mmcv.cnn  # noqa: F401  (registers mmcv's layers)
                except ImportError:
                    pass
                cls = MODELS.get(item)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise GaPConfigError(
                f'module_types entry {item!r} is not a layer type: use '
                f"torch.nn names such as 'Conv2d' or 'Linear', a layer "
                f"registered in MMEngine's MODELS (such as mmcv's 'DCNv2'), "
                f'or the class itself')
        resolved.append(cls)
    return tuple(resolved)


def strip_wrapper_prefix(name: str) -> str:
    """Drop the ``module.`` prefix that DDP-style wrappers add to names."""
    return name[len('module.'):] if name.startswith('module.') else name


class PrunableParams(OrderedDict):
    """The prunable weights by name, in model order (what
    :func:`select_prunable` returns), and what the selection knows about
    them and about the weights it left out.

    A :class:`Sparsifier` reads :attr:`layouts` from it; it is an
    ``OrderedDict`` of parameters for everything else.

    Attributes:
        layouts (dict[str, WeightLayout]): The layout of every selected
            weight (blocks, output dim).
        frozen (OrderedDict[str, int]): Weights of prunable layers left out
            because they are frozen, with their sizes.
        output_layers (OrderedDict[str, str]): Output layers of heads left
            out by default, each with ``'<head class>.<attribute>'``.
        excluded (OrderedDict[str, str]): Weights an ``exclude`` regex left
            out, with the regex.
        not_included (list[str]): Weights no ``include`` regex matched.
        left_out (OrderedDict[str, str]): Weights a method left out on top
            (see :meth:`subset`), with why.
        module_types (tuple[type]): The layer types the selection took.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.layouts: Dict[str, WeightLayout] = {}
        self.frozen: Dict[str, int] = OrderedDict()
        self.output_layers: Dict[str, str] = OrderedDict()
        self.excluded: Dict[str, str] = OrderedDict()
        self.not_included: List[str] = []
        self.left_out: Dict[str, str] = OrderedDict()
        self.module_types: Tuple[Type[nn.Module], ...] = \
            DEFAULT_PRUNABLE_TYPES

    def subset(self,
               names: Iterable[str],
               why: str = 'left out by the method') -> 'PrunableParams':
        """These weights only (in model order), with their layouts and the
        same record of what was left out; the others are added to
        :attr:`left_out` with ``why`` (a mapping name -> why also works)."""
        names = set(names)
        out = PrunableParams((n, p) for n, p in self.items() if n in names)
        out.layouts = {n: v for n, v in self.layouts.items() if n in names}
        out.frozen = OrderedDict(self.frozen)
        out.output_layers = OrderedDict(self.output_layers)
        out.excluded = OrderedDict(self.excluded)
        out.not_included = list(self.not_included)
        out.left_out = OrderedDict(self.left_out)
        for name in self:
            if name not in names:
                out.left_out[name] = why.get(name, '') if isinstance(
                    why, Mapping) else why
        out.module_types = self.module_types
        return out


def select_prunable(model: nn.Module,
                    module_types: Optional[Sequence[Type[nn.Module]]] = None,
                    include: RegexList = None,
                    exclude: RegexList = None,
                    prune_output_layers: bool = False) -> PrunableParams:
    """Select the prunable weights of ``model``, in model order.

    A parameter is prunable when it is a weight of a layer whose type is one
    of ``module_types`` (subclasses count; see :func:`layer_weights`), it is
    trainable, it is no output layer of a head (see
    :mod:`~gap_mm.sparsity.output_layers`) unless ``prune_output_layers``,
    its name matches one of ``include`` (when given) and matches none of
    ``exclude``. Regexes are applied with :func:`re.search` to the fully
    qualified parameter name, e.g. ``'backbone.layer1.0.conv1.weight'``,
    and are checked against every weight of those layers, the frozen ones
    and the output layers included (so an ``exclude`` that names an output
    layer by hand stays valid).

    A frozen weight (``requires_grad=False``) is never pruned: it gets no
    gradient, so a pruned weight could never grow back. It is left out and
    recorded in :attr:`PrunableParams.frozen`; an ``include`` regex that
    selects frozen weights and nothing else is an error.

    Args:
        model (nn.Module): The model, unwrapped from any DDP wrapper.
        module_types (Sequence[type], optional): Layer types whose weights
            are prunable. Defaults to :data:`DEFAULT_PRUNABLE_TYPES`.
        include (str | Sequence[str], optional): Keep only these names.
        exclude (str | Sequence[str], optional): Drop these names, e.g. the
            stem conv.
        prune_output_layers (bool): Prune the output layers of heads too.
            Defaults to False.

    Returns:
        PrunableParams: Prunable parameters by name, with their layouts and
        what was left out.

    Raises:
        GaPConfigError: If a regex matches no candidate parameter (it would
            be a silent no-op otherwise), an ``include`` regex selects only
            frozen weights or only output layers, or nothing is left to
            prune.
    """
    types = tuple(module_types) if module_types else DEFAULT_PRUNABLE_TYPES
    candidates: Dict[str, nn.Parameter] = OrderedDict()
    layouts: Dict[str, WeightLayout] = {}
    seen = set()
    for module_name, module in model.named_modules():
        if not isinstance(module, types):
            continue
        for attr, param, layout in layer_weights(module):
            if id(param) in seen:  # a weight two layers share counts once
                continue
            seen.add(id(param))
            name = strip_wrapper_prefix(
                f'{module_name}.{attr}' if module_name else attr)
            candidates[name] = param
            layouts[name] = layout

    include_res = compile_regexes(_as_list(include), 'include')
    exclude_res = compile_regexes(_as_list(exclude), 'exclude')
    for regex, what in [(r, 'include') for r in include_res] + \
            [(r, 'exclude') for r in exclude_res]:
        if not any(regex.search(name) for name in candidates):
            raise GaPConfigError(
                f'{what} regex {regex.pattern!r} matches no prunable '
                f'parameter of {type(model).__name__}. The prunable '
                f'candidates are {_preview(candidates)}.')

    outputs = {} if prune_output_layers else output_weights(model)
    frozen = {n for n, p in candidates.items() if not p.requires_grad}
    output = {
        n: outputs[id(p)]
        for n, p in candidates.items() if id(p) in outputs
    }
    for regex in include_res:
        hits = [n for n in candidates if regex.search(n)]
        if any(n not in frozen and n not in output for n in hits):
            continue
        stuck = [n for n in hits if n in frozen]
        if stuck:
            raise GaPConfigError(
                f'include regex {regex.pattern!r} selects only frozen '
                f'weights, {_preview(stuck)}, which are never pruned: a '
                f'frozen weight (requires_grad=False) gets no gradient, so a '
                f'pruned weight could never grow back. Unfreeze them to '
                f'prune them (a backbone\'s frozen_stages=-1), or drop the '
                f'regex.')
        raise GaPConfigError(
            f'include regex {regex.pattern!r} selects only output layers of '
            f'heads, {_preview(hits)}, which stay dense by default; set '
            f'prune_output_layers=True on the hook to prune them.')

    selected = PrunableParams()
    selected.module_types = types
    for name, param in candidates.items():
        hit = next((r for r in exclude_res if r.search(name)), None)
        if hit is not None:
            selected.excluded[name] = hit.pattern
        elif include_res and not any(r.search(name) for r in include_res):
            selected.not_included.append(name)
        elif not param.requires_grad:
            selected.frozen[name] = param.numel()
        elif name in output:
            selected.output_layers[name] = output[name]
        else:
            selected[name] = param
            selected.layouts[name] = layouts[name]
    if not selected:
        left = ''
        if selected.frozen or selected.output_layers:
            left = (f'; {len(selected.frozen)} frozen weights and '
                    f'{len(selected.output_layers)} output layers are left '
                    f'out by default')
        raise GaPConfigError(
            f'No prunable parameter is left in {type(model).__name__} '
            f'(module types {[t.__name__ for t in types]}, include '
            f'{_as_list(include)}, exclude {_as_list(exclude)}{left}).')
    return selected


def _preview(names: Iterable[str], limit: int = 8) -> str:
    names = list(names)
    shown = ', '.join(names[:limit])
    more = f' ... ({len(names)} in all)' if len(names) > limit else ''
    return f'[{shown}{more}]'
