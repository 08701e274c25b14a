# Copyright (c) gap_mm contributors. All rights reserved.
"""Split prunable layers into the K partitions that GaP grows in turn."""
from typing import List, Mapping, Sequence, Union

from gap_mm.errors import GaPConfigError
from .selection import compile_regexes

PartitionSpec = Union[int, Sequence[Union[str, Sequence[str]]]]


def auto_partitions(numels: Mapping[str, int],
                    num_partitions: int) -> List[List[str]]:
    """Contiguous groups in model order, balanced by parameter count.

    The boundaries are placed where the running parameter count is nearest
    to ``j * total / K``, with at least one layer in every group.

    Args:
        numels (Mapping[str, int]): Parameter counts by name, in model order.
        num_partitions (int): K.

    Returns:
        list[list[str]]: K lists of names.
    """
    names = list(numels)
    if not isinstance(num_partitions, int) or num_partitions < 1:
        raise GaPConfigError(
            f'partitions must be a positive int or a list of regex groups, '
            f'but got {num_partitions!r}')
    if num_partitions > len(names):
        raise GaPConfigError(
            f'partitions={num_partitions} is more than the {len(names)} '
            f'prunable layers; use at most {len(names)} partitions')
    total = sum(numels.values())
    cumulative, running = [], 0
    for name in names:
        running += numels[name]
        cumulative.append(running)
    bounds, start = [], 0
    for j in range(1, num_partitions):
        target = j * total / num_partitions
        # The group must keep one layer and leave one for each group after.
        lo, hi = start + 1, len(names) - (num_partitions - j)
        best = min(
            range(lo, hi + 1),
            key=lambda i: (abs(cumulative[i - 1] - target), i))
        bounds.append(best)
        start = best
    edges = [0] + bounds + [len(names)]
    return [names[a:b] for a, b in zip(edges[:-1], edges[1:])]


def regex_partitions(
        names: Sequence[str],
        groups: Sequence[Union[str, Sequence[str]]]) -> List[List[str]]:
    """Partitions given by regex groups.

    Each group is a regex or a list of regexes (:func:`re.search`); every
    prunable layer must fall in exactly one group.

    Raises:
        ValueError: Listing the unassigned and the doubly-assigned layers, or
            naming a group that matches nothing.
    """
    compiled = []
    for idx, group in enumerate(groups):
        patterns = [group] if isinstance(group, str) else list(group)
        compiled.append(compile_regexes(patterns, f'partitions[{idx}]'))
    members: List[List[str]] = [[] for _ in compiled]
    owners = {name: [] for name in names}
    for name in names:
        for idx, regexes in enumerate(compiled):
            if any(r.search(name) for r in regexes):
                members[idx].append(name)
                owners[name].append(idx)
    problems = []
    for idx, group in enumerate(groups):
        if not members[idx]:
            problems.append(f'partition {idx} {group!r} matches no prunable '
                            f'layer')
    unassigned = [n for n, o in owners.items() if not o]
    doubled = {n: o for n, o in owners.items() if len(o) > 1}
    if unassigned:
        problems.append(f'{len(unassigned)} prunable layer(s) are in no '
                        f'partition: {unassigned}')
    if doubled:
        problems.append('layer(s) in more than one partition: ' +
                        ', '.join(f'{n} (partitions {o})'
                                  for n, o in doubled.items()))
    if problems:
        raise GaPConfigError('Invalid GaP partitions: ' + '; '.join(problems))
    return members


def build_partitions(numels: Mapping[str, int],
                     spec: PartitionSpec) -> List[List[str]]:
    """Build partitions from an int (automatic) or a list of regex groups."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        return auto_partitions(numels, spec)
    if isinstance(spec, (list, tuple)) and spec:
        return regex_partitions(list(numels), spec)
    raise GaPConfigError(
        f'partitions must be a positive int or a non-empty list '
        f'of regex groups, but got {spec!r}')
