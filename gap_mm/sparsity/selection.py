# Copyright (c) gap_mm contributors. All rights reserved.
"""Choose which parameters of a model are prunable."""
import re
from collections import OrderedDict
from typing import Dict, Iterable, Optional, Sequence, Tuple, Type, Union

from torch import nn

from gap_mm.errors import GaPConfigError

#: Layer types whose ``weight`` is prunable unless a config says otherwise.
DEFAULT_PRUNABLE_TYPES: Tuple[Type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d,
                                                       nn.Conv3d, nn.Linear)

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


def select_prunable(
    model: nn.Module,
    module_types: Optional[Sequence[Type[nn.Module]]] = None,
    include: RegexList = None,
    exclude: RegexList = None,
) -> 'OrderedDict[str, nn.Parameter]':
    """Select the prunable weights of ``model``, in model order.

    A parameter is prunable when it is the ``weight`` of a module whose type
    is one of ``module_types`` (subclasses count), its name matches one of
    ``include`` (when given) and matches none of ``exclude``. Regexes are
    applied with :func:`re.search` to the fully qualified parameter name,
    e.g. ``'backbone.layer1.0.conv1.weight'``.

    Args:
        model (nn.Module): The model, unwrapped from any DDP wrapper.
        module_types (Sequence[type], optional): Layer types whose weight is
            prunable. Defaults to Conv1d/2d/3d and Linear.
        include (str | Sequence[str], optional): Keep only these names.
        exclude (str | Sequence[str], optional): Drop these names, e.g. the
            stem conv and the final classifier.

    Returns:
        OrderedDict[str, nn.Parameter]: Prunable parameters by name.

    Raises:
        ValueError: If a regex matches no candidate parameter (it would be a
            silent no-op otherwise), or nothing is left to prune.
    """
    types = tuple(module_types) if module_types else DEFAULT_PRUNABLE_TYPES
    candidates: Dict[str, nn.Parameter] = OrderedDict()
    for module_name, module in model.named_modules():
        weight = getattr(module, 'weight', None)
        if isinstance(module, types) and isinstance(weight, nn.Parameter):
            name = f'{module_name}.weight' if module_name else 'weight'
            candidates[strip_wrapper_prefix(name)] = weight

    include_res = compile_regexes(_as_list(include), 'include')
    exclude_res = compile_regexes(_as_list(exclude), 'exclude')
    for regex, what in [(r, 'include') for r in include_res] + \
            [(r, 'exclude') for r in exclude_res]:
        if not any(regex.search(name) for name in candidates):
            raise GaPConfigError(
                f'{what} regex {regex.pattern!r} matches no prunable '
                f'parameter of {type(model).__name__}. The prunable '
                f'candidates are {_preview(candidates)}.')

    selected = OrderedDict(
        (name, param) for name, param in candidates.items()
        if (not include_res or any(r.search(name)
                                   for r in include_res)) and not any(
                                       r.search(name) for r in exclude_res))
    if not selected:
        raise GaPConfigError(
            f'No prunable parameter is left in {type(model).__name__} '
            f'(module types {[t.__name__ for t in types]}, include '
            f'{_as_list(include)}, exclude {_as_list(exclude)}).')
    return selected


def _preview(names: Iterable[str], limit: int = 8) -> str:
    names = list(names)
    shown = ', '.join(names[:limit])
    more = f' ... ({len(names)} in all)' if len(names) > limit else ''
    return f'[{shown}{more}]'
