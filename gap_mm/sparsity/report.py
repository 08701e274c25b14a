# Copyright (c) gap_mm contributors. All rights reserved.
"""Plain-text per-layer sparsity tables."""
from typing import Mapping, Sequence

_COLUMNS = ('layer', 'shape', 'params', 'non-zero', 'sparsity', 'partition')


def format_layer_table(rows: Sequence[Mapping[str, object]],
                       title: str = '') -> str:
    """Format rows of ``name, shape, numel, kept, sparsity, partition`` (as
    :meth:`MagnitudeSparsifier.layer_stats` gives) with a total line."""
    body = [(str(r['name']), 'x'.join(str(d) for d in r['shape']),
             str(r['numel']), str(r['kept']), f"{100 * r['sparsity']:.2f}%",
             str(r['partition'])) for r in rows]
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
