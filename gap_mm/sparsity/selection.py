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


def _compile(patterns: Iterable[str], what: str) -> list:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise GaPConfigError(
                f'{what} regex {pattern!r} is not a valid regular expression: '
                f'{err}') from err
    return compiled


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

    include_res = _compile(_as_list(include), 'include')
    exclude_res = _compile(_as_list(exclude), 'exclude')
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
