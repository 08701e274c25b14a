# Copyright (c) gap_mm contributors. All rights reserved.
"""The sparsity frontier: how sparse each method goes and stays within a
point of dense, from a grid's cell records.

``headline(records, task)`` is the front page's table (a row per method,
a column per sparsity, and the highest sparsity whose mean over seeds is
within ``tolerance`` of dense's mean); ``plot(records, path)`` draws the
metric against density on a log axis, one panel per task, one fixed colour
per method, dense as a band. Only cells at the task's default budget, with
no variant and a numeric sparsity, count.
"""
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

#: One colour per method label, the same in every panel and every plot.
METHOD_COLOURS = OrderedDict([
    ('C-GaP', '#1f77b4'),
    ('P-GaP', '#17becf'),
    ('static', '#ff7f0e'),
    ('static random', '#bcbd22'),
    ('GMP', '#2ca02c'),
    ('RigL', '#d62728'),
    ('SET', '#9467bd'),
    ('GReg-1', '#8c564b'),
    ('GReg-2', '#e377c2'),
    ('SCS', '#7f7f7f'),
])

#: The task's metric label, for the table's caption and the plot's axis.
TASK_LABELS = {
    'det': 'bbox mAP',
    'crowded': 'bbox mAP',
    'partseg': 'instance mIoU'
}


def _frontier_cells(records: Sequence[Mapping[str, Any]], task: str,
                    distribution: str) -> List[Mapping[str, Any]]:
    return [
        r for r in records
        if r['task'] == task and r.get('budget', 1) == 1
        and not r.get('variant') and r.get('procs', 1) == 1
        and (r.get('sparsity') is None or
             (isinstance(r['sparsity'], float)
              and r.get('distribution') == distribution))
    ]


def summarize(
    records: Sequence[Mapping[str, Any]],
    task: str,
    distribution: str = 'erk'
) -> Tuple[Optional[Dict], Dict[str, Dict[float, Dict]]]:
    """``(dense, {method: {sparsity: stats}})`` over the cells of ``task``
    at ``distribution``, where stats are ``mean``, ``min``, ``max``, ``n``
    and ``seeds`` of the metric over seeds."""

    def stats(recs):
        values = [r['value'] for r in recs]
        return dict(
            mean=sum(values) / len(values),
            min=min(values),
            max=max(values),
            n=len(values),
            seeds=sorted(r['seed'] for r in recs))

    cells = _frontier_cells(records, task, distribution)
    dense_recs = [r for r in cells if r.get('sparsity') is None]
    methods: Dict[str, Dict[float, List]] = OrderedDict()
    for r in cells:
        if r.get('sparsity') is not None:
            methods.setdefault(r['method'], {}).setdefault(
                r['sparsity'], []).append(r)
    return (stats(dense_recs) if dense_recs else None, {
        m: {s: stats(rs)
            for s, rs in sorted(by.items())}
        for m, by in methods.items()
    })


def method_order(methods: Mapping[str, Any]) -> List[str]:
    """The methods in :data:`METHOD_COLOURS` order, unknown ones after them
    in their own order: the rows of the table and the lines of the plot."""
    order = [m for m in METHOD_COLOURS if m in methods]
    return order + [m for m in methods if m not in order]


def within_dense(dense: Mapping, by_sparsity: Mapping[float, Mapping],
                 tolerance: float = 0.01) -> Optional[float]:
    """The highest sparsity whose mean is at least dense's mean minus
    ``tolerance``; None when no sparsity is."""
    ok = [s for s, st in by_sparsity.items()
          if st['mean'] >= dense['mean'] - tolerance]
    return max(ok) if ok else None


def _fmt(st: Mapping, dense: Optional[Mapping]) -> str:
    text = f'{st["mean"]:.3f}'
    if st['n'] > 1:
        text += f' [{st["min"]:.3f}, {st["max"]:.3f}]'
    text += f' n={st["n"]}'
    if dense is not None:
        text += f' ({100 * (st["mean"] - dense["mean"]):+.1f})'
    return text


def headline(records: Sequence[Mapping[str, Any]],
             task: str = 'det',
             tolerance: float = 0.01) -> str:
    """The Markdown table of the frontier for ``task``."""
    dense, methods = summarize(records, task)
    if dense is None and not methods:
        return f'*No finished {task} cell yet.*\n'
    columns = sorted({s for by in methods.values() for s in by})
    lines = [
        '| method | ' + ' | '.join(f'{100 * s:g}%' for s in columns) +
        f' | within {100 * tolerance:g} point of dense up to |',
        '|---|' + '---|' * (len(columns) + 1),
    ]
    if dense is not None:
        lines.append('| dense | ' + _fmt(dense, None) + ' |' +
                     ' |' * len(columns))
    for method in method_order(methods):
        by = methods[method]
        cells = [_fmt(by[s], dense) if s in by else '' for s in columns]
        best = within_dense(dense, by, tolerance) if dense else None
        if dense is None:
            verdict = 'no dense cell'
        elif best is None:
            verdict = f'below {100 * min(by):g}%'
        else:
            st = by[best]
            verdict = (f'**{100 * best:g}%** ({st["mean"]:.3f}, seeds '
                       f'{st["min"]:.3f}-{st["max"]:.3f})')
        lines.append(f'| {method} | ' + ' | '.join(cells) + f' | {verdict} |')
    return '\n'.join(lines) + '\n'


def plot(records: Sequence[Mapping[str, Any]],
         path: str,
         tasks: Sequence[str] = ('det', 'partseg')) -> bool:
    """The metric against density (1 - sparsity, log axis), a panel per
    task that has cells; False, writing nothing, when none has."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    panels = [(t, *summarize(records, t)) for t in tasks]
    panels = [p for p in panels if p[2]]
    if not panels:
        return False
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6 * len(panels), 4.4), squeeze=False)
    for ax, (task, dense, methods) in zip(axes[0], panels):
        if dense is not None:
            ax.axhspan(dense['min'], dense['max'], color='0.88', zorder=0,
                       label=f'dense, min-max of {dense["n"]} seeds')
            ax.axhline(dense['mean'], color='0.35', lw=1, ls='--',
                       label='dense, mean')
        order = method_order(methods)
        for rank, method in enumerate(order):
            by = methods[method]
            # a small sideways shift per method keeps the seed bars apart
            shift = 1 + 0.015 * (rank - (len(order) - 1) / 2)
            xs = [(1 - s) * shift for s in by]
            ys = [st['mean'] for st in by.values()]
            err = [[st['mean'] - st['min'] for st in by.values()],
                   [st['max'] - st['mean'] for st in by.values()]]
            ax.errorbar(xs, ys, yerr=err, marker='o', capsize=3,
                        color=METHOD_COLOURS.get(method, 'black'),
                        label=method)
        densities = sorted({1 - s for by in methods.values() for s in by})
        ax.set_xscale('log')
        ax.set_xticks(densities)
        ax.set_xticklabels([f'{100 * d:.3g}%' for d in densities])
        ax.minorticks_off()
        ax.invert_xaxis()
        ax.set_xlabel('density (share of prunable weights kept), log axis')
        ax.set_ylabel(TASK_LABELS.get(task, task))
        ax.set_title({'det': 'demo detector, ERK',
                      'partseg': 'tiny PointNet++, ERK'}.get(task, task))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
