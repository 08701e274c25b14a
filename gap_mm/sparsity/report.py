# Copyright (c) gap_mm contributors. All rights reserved.
"""Plain-text per-layer sparsity tables, and what the selection of prunable
weights left dense."""
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence

from torch import nn

from .selection import FROZEN_WHY, PrunableParams, layer_weights

_COLUMNS = ('layer', 'shape', 'params', 'non-zero', 'sparsity', 'partition')

#: A weight left dense is *large* (named in the start table with how to
#: include it) above this share of the prunable weights.
LARGE_DENSE_SHARE = 0.01


def _count(n: int, what: str) -> str:
    return f'{n} {what}' + ('' if n == 1 else 's')


def _shape(shape) -> str:
    return 'x'.join(str(d) for d in shape)


def format_layer_table(rows: Sequence[Mapping[str, object]],
                       title: str = '') -> str:
    """Format rows of ``name, shape, numel, kept, sparsity, partition`` (as
    :meth:`MagnitudeSparsifier.layer_stats` gives) with a total line. A
    layer of several blocks (an attention's packed q, k and v projections)
    is followed by a row per block, its rows along dim 0."""
    body = []
    for r in rows:
        body.append((str(r['name']), _shape(r['shape']), str(r['numel']),
                     str(r['kept']), f"{100 * r['sparsity']:.2f}%",
                     str(r['partition'])))
        start = 0
        for block in r.get('blocks') or ():
            stop = start + block['shape'][0]
            n, kept = block['numel'], block['kept']
            body.append((f'  [{start}:{stop}]', _shape(block['shape']),
                         str(n), str(kept),
                         f'{100 * (1 - kept / max(1, n)):.2f}%', ''))
            start = stop
    total = sum(int(r['numel']) for r in rows)
    kept = sum(int(r['kept']) for r in rows)
    body.append(('total', '', str(total), str(kept),
                 f'{100 * (1 - kept / max(1, total)):.2f}%', ''))
    widths = [
        max(len(c), *(len(line[i]) for line in body))
        for i, c in enumerate(_COLUMNS)
    ]

    def fmt(line):
        cells = [line[0].ljust(widths[0])]
        cells += [v.rjust(w) for v, w in zip(line[1:], widths[1:])]
        return ' | '.join(cells)

    rule = '-+-'.join('-' * w for w in widths)
    lines = [fmt(_COLUMNS), rule] + [fmt(b) for b in body[:-1]]
    lines += [rule, fmt(body[-1])]
    return (title + '\n' if title else '') + '\n'.join(lines)


def format_partitions(rows: Sequence[Mapping[str, object]]) -> str:
    """One line: the layers and weights each partition of
    :meth:`~gap_mm.sparsity.Sparsifier.layer_stats` rows holds."""
    parts: Dict[int, List[int]] = OrderedDict()
    for r in sorted(rows, key=lambda r: r['partition']):
        count = parts.setdefault(r['partition'], [0, 0])
        count[0] += 1
        count[1] += int(r['numel'])
    total = max(1, sum(c[1] for c in parts.values()))
    return 'Partitions: ' + '; '.join(
        f'{k}: {_count(n, "layer")}, {numel:,} weights '
        f'({100 * numel / total:.1f}%)'
        for k, (n, numel) in parts.items())


def _why_dense(name: str, param: nn.Parameter,
               modules: Mapping[str, nn.Module],
               selection: PrunableParams) -> Sequence[str]:
    """``(why, how to include it)`` of a weight the selection left out."""
    if name in selection.excluded:
        return (f'excluded by the regex {selection.excluded[name]!r}',
                'take it out of `exclude`')
    if name in selection.not_included:
        return 'no `include` regex matches it', 'add it to `include`'
    if name in selection.frozen:
        return (FROZEN_WHY, 'unfreeze it (a backbone\'s frozen_stages=-1) '
                'to prune it')
    if name in selection.output_layers:
        return (f'an output layer ({selection.output_layers[name]})',
                'set prune_output_layers=True on the hook')
    left = selection.left_out.get(name)
    if left:
        return left, ''
    owner, _, attr = name.rpartition('.')
    module = modules.get(owner)
    if module is None:
        return 'not a weight of a layer', ''
    kind = type(module).__name__
    if any(p is param for _, p, _ in layer_weights(module)):
        return (f'a {kind} weight; {kind} is not among the prunable layer '
                f'types', f"add '{kind}' to module_types")
    return (f'the {attr!r} of a {kind}, not a layer weight',
            'gap_mm prunes the weights of layers only')


def dense_weights(model: nn.Module,
                  selection: PrunableParams,
                  share: float = LARGE_DENSE_SHARE) -> List[Dict[str, object]]:
    """The weight tensors (2 or more dims) of ``model`` left dense that
    hold more than ``share`` of the prunable weights, each with why and how
    to include it. Biases and norm scales (1 dim) stay dense by design.

    Returns:
        list[dict]: Rows ``name, shape, numel, share, why, how``, in model
        order.
    """
    selected = {id(p) for p in selection.values()}
    total = sum(p.numel() for p in selection.values())
    modules = dict(model.named_modules())
    rows = []
    for name, param in model.named_parameters():
        if id(param) in selected or param.dim() < 2 or \
                param.numel() <= share * total:
            continue
        why, how = _why_dense(name, param, modules, selection)
        rows.append(
            dict(
                name=name,
                shape=tuple(param.shape),
                numel=param.numel(),
                share=param.numel() / max(1, total),
                why=why,
                how=how))
    return rows


def _names(items: Mapping[str, object], what) -> str:
    return ', '.join(f'{n} ({what(v)})' for n, v in items.items())


def format_selection(model: nn.Module,
                     selection: PrunableParams,
                     share: float = LARGE_DENSE_SHARE,
                     warnings: Optional[Sequence[str]] = None) -> str:
    """What the selection left dense, for the start table: the frozen
    weights and the output layers of heads it leaves out by default, each
    named, and every weight tensor over ``share`` of the prunable weights
    (those among them too: SSD300's output convs are a third of the model)
    with why and how to include it; then ``warnings``, one per line.

    Returns:
        str: Lines, or '' when there is nothing to say.
    """
    lines = []
    if selection.frozen:
        lines.append(
            f'Left dense, {_count(len(selection.frozen), "frozen weight")} '
            f'({sum(selection.frozen.values()):,} values; {FROZEN_WHY}; '
            f'unfreeze them, e.g. a backbone\'s frozen_stages=-1, to prune '
            f'them): ' + _names(selection.frozen, lambda v: f'{v:,}'))
    if selection.output_layers:
        lines.append(
            f'Left dense, '
            f'{_count(len(selection.output_layers), "output layer")} of '
            f'heads (prune_output_layers=True prunes them): ' +
            _names(selection.output_layers, str))
    total = sum(p.numel() for p in selection.values())
    for row in dense_weights(model, selection, share):
        how = f'; to prune it: {row["how"]}' if row['how'] else ''
        lines.append(
            f'Large and dense: {row["name"]} {_shape(row["shape"])} '
            f'({row["numel"]:,} values, {100 * row["share"]:.1f}% of the '
            f'{total:,} prunable): {row["why"]}{how}')
    lines += [f'Warning: {w}' for w in warnings or ()]
    return '\n'.join(lines)
