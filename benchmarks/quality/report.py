# Copyright (c) gap_mm contributors. All rights reserved.
"""Turn the records of a quality grid into tables, files and README blocks.

:func:`write_outputs` writes ``results.json``, ``results.csv``,
``table.md`` and ``plot.png`` from the cell records (``cells/<id>.json``,
written by :mod:`runner`); :func:`readme_block` and :func:`update_readme`
put a grid's table, and per-method tables, between the markers of a
Markdown file. Nothing here knows about any sparsity method: rows are the
records' labels, and the reference of every row is the dense column of
its study, task and budget.
"""
import csv
import json
import os
import os.path as osp
import re
import sys
from collections import OrderedDict, defaultdict
from typing import Any, Dict, List, Mapping, Optional, Sequence

import frontier
from cell import TASK_METRICS, Cell


def load_records(out_dir: str,
                 cells: Optional[Sequence[Cell]] = None) -> List[dict]:
    """The finished cell records, in grid order (all of them when ``cells``
    is None)."""
    folder = osp.join(out_dir, 'cells')
    if not osp.isdir(folder):
        return []
    names = [f'{c.id}.json' for c in cells] if cells is not None else \
        sorted(os.listdir(folder))
    records = []
    for name in names:
        path = osp.join(folder, name)
        if name.endswith('.json') and osp.isfile(path):
            with open(path) as f:
                records.append(json.load(f))
    return records


def _column(sparsity: Any) -> str:
    if sparsity is None:
        return 'dense'
    if isinstance(sparsity, str):
        return sparsity
    return f'{100 * sparsity:g}%'


def _row(record: Mapping[str, Any], with_budget: bool = True) -> str:
    dist = record.get('distribution')
    row = record['method'] + (f' ({dist})' if dist else '')
    if record.get('variant'):
        row += f' [{record["variant"]}]'
    if record.get('procs', 1) != 1:
        row += f' on {record["procs"]} processes'
    if with_budget and record.get('budget', 1) != 1:
        row += f' x{record["budget"]:g} budget'
    return row


def aggregate(records: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Group the records by (study, task, row, column) over seeds."""
    groups: Dict[tuple, List[Mapping[str, Any]]] = OrderedDict()
    for rec in records:
        key = (rec.get('study', 'main'), rec['task'], _row(rec),
               _column(rec.get('sparsity')), rec.get('budget', 1))
        groups.setdefault(key, []).append(rec)
    out = []
    for (study, task, row, column, budget), recs in groups.items():
        values = [r['value'] for r in recs]
        out.append(
            dict(
                study=study,
                task=task,
                row=row,
                series=_row(recs[0], with_budget=False),
                column=column,
                budget=budget,
                method=recs[0]['method'],
                distribution=recs[0].get('distribution'),
                sparsity=recs[0].get('sparsity'),
                n=len(values),
                mean=sum(values) / len(values),
                min=min(values),
                max=max(values),
                seeds=[r['seed'] for r in recs],
                measured_sparsity=sum(r['measured_sparsity'] or 0.0
                                      for r in recs) / len(recs),
                train_seconds=sum(r['train_seconds']
                                  for r in recs) / len(recs),
                flops_saved=sum(_flops_saved(r) for r in recs) / len(recs),
                slim_mean=sum(r['slimmed']['value'] for r in recs) /
                len(recs) if all(r.get('slimmed') for r in recs) else None,
                train_flops=sum(r['train_flops'] for r in recs) /
                len(recs) if all(r.get('train_flops') is not None
                                 for r in recs) else None))
    return out


def _dense_reference(groups: Sequence[Mapping[str, Any]], study: str,
                     task: str, budget: float) -> Optional[Mapping]:
    for g in groups:
        if (g['study'], g['task'], g['column'],
                g['budget']) == (study, task, 'dense', budget):
            return g
    return None


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """Markdown tables, one per (study, task): a row per method, a column
    per sparsity, each cell ``mean [min, max] (Δ dense)`` over the seeds."""
    groups = aggregate(records)
    lines: List[str] = []
    keys = list(OrderedDict.fromkeys((g['study'], g['task']) for g in groups))
    for study, task in keys:
        mine = [g for g in groups if (g['study'], g['task']) == (study, task)]
        columns = list(OrderedDict.fromkeys(g['column'] for g in mine))
        columns.sort(key=lambda c: (c != 'dense', c))
        # dense first, then each budget's rows in grid order
        order = {}
        for g in mine:
            order.setdefault(g['row'],
                             (g['budget'], g['column'] != 'dense', len(order)))
        rows = sorted(order, key=order.get)
        label = TASK_METRICS[task][1]
        lines.append(f'### {study}: {task} ({label}; mean [min, max] over '
                     f'seeds, n = seeds, Δ = points vs dense at the same '
                     f'budget)')
        lines.append('')
        lines.append('| method | ' + ' | '.join(columns) + ' |')
        lines.append('|---|' + '---|' * len(columns))
        for row in rows:
            cells = []
            for column in columns:
                g = next((g for g in mine
                          if g['row'] == row and g['column'] == column), None)
                if g is None:
                    cells.append('')
                    continue
                text = f'{g["mean"]:.3f}'
                if g['n'] > 1:
                    text += f' [{g["min"]:.3f}, {g["max"]:.3f}]'
                text += f' n={g["n"]}'
                ref = _dense_reference(groups, study, task, g['budget'])
                if ref is not None and column != 'dense':
                    text += f' ({100 * (g["mean"] - ref["mean"]):+.1f})'
                if g['flops_saved'] >= 0.001:
                    text += f', FLOPs -{100 * g["flops_saved"]:.1f}%'
                if g.get('slim_mean') is not None:
                    text += f' (slimmed: {g["slim_mean"]:.3f})'
                if g.get('train_flops') is not None:
                    text += (f', training FLOPs '
                             f'-{100 * (1 - g["train_flops"]):.1f}%')
                cells.append(text)
            lines.append(f'| {row} | ' + ' | '.join(cells) + ' |')
        lines.append('')
    return '\n'.join(lines)


def _flops_saved(record: Mapping[str, Any]) -> float:
    """The FLOPs a record's model saves: measured on the slimmed model
    when the cell was slimmed, else the zero filters' lower bound."""
    slim = record.get('slimmed')
    if slim and all(slim.get('flops') or [None]):
        before, after = slim['flops']
        return 1 - after / before
    return (record.get('flops') or {}).get('saved_fraction', 0.0)


def write_outputs(records: Sequence[Mapping[str, Any]],
                  out_dir: str,
                  log=lambda msg: print(msg, file=sys.stderr, flush=True)
                  ) -> bool:
    """``results.json`` (every cell, without loss curves), ``results.csv``,
    ``table.md`` and ``plot.png`` in ``out_dir``. Returns whether the plot
    was written; when there is nothing to plot, says so through ``log``
    and removes an older ``plot.png``, which would show other cells than
    the table."""
    os.makedirs(out_dir, exist_ok=True)
    slim = [{k: v for k, v in r.items() if k != 'losses'} for r in records]
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(dict(cells=slim, groups=aggregate(records)), f, indent=1)
    fields = [
        'id', 'study', 'task', 'method', 'distribution', 'sparsity', 'budget',
        'variant', 'seed', 'metric', 'value', 'measured_sparsity',
        'train_seconds', 'final_loss', 'commit', 'date'
    ]
    with open(osp.join(out_dir, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
        writer.writeheader()
        for rec in slim:
            writer.writerow(rec)
    with open(osp.join(out_dir, 'table.md'), 'w') as f:
        f.write(format_table(records))
    path = osp.join(out_dir, 'plot.png')
    if records and plot(records, path):
        return True
    stale = osp.isfile(path)
    if stale:
        os.remove(path)
    log(f'no plot in {out_dir}: no finished cell at the default budget '
        f'and no budget study' + ('; removed the older plot.png' if stale
                                  else ''))
    return False


def _x(column: str) -> float:
    """Plot position of a table column: its sparsity, N:M as 1 - N/M, a
    FLOPs target as the FLOPs it removes."""
    if column.startswith('FLOPs '):
        return 1 - float(column.split()[1].rstrip('%')) / 100
    if column.endswith('%'):
        return float(column[:-1]) / 100
    n, m = (int(v) for v in column.split(':'))
    return 1 - n / m


def _plot_sparsity(ax, mine, title, ylabel) -> None:
    """One panel: the metric against sparsity at the task's own budget,
    a line per method (min-max bars), dense as a band."""
    lines = defaultdict(list)
    for g in mine:
        if g['column'] == 'dense':
            ax.axhspan(g['min'], g['max'], color='0.85', zorder=0)
            ax.axhline(
                g['mean'],
                color='0.3',
                lw=1,
                ls='--',
                label=f'{g["row"]} (band: min-max)')
        else:
            lines[g['row']].append(g)
    for row, gs in lines.items():
        gs.sort(key=lambda g: _x(g['column']))
        xs = [_x(g['column']) for g in gs]
        ys = [g['mean'] for g in gs]
        err = [[g['mean'] - g['min'] for g in gs],
               [g['max'] - g['mean'] for g in gs]]
        # one colour per method in every panel and plot, one line style
        # per distribution (ERK solid, uniform dashed, anything else dotted)
        dist = gs[0].get('distribution')
        ax.errorbar(xs, ys, yerr=err, marker='o', capsize=3, label=row,
                    color=frontier.METHOD_COLOURS.get(gs[0]['method']),
                    ls={'erk': '-', 'uniform': '--'}.get(dist, ':'))
    ticks = sorted({_x(g['column']) for g in mine if g['column'] != 'dense'})
    ax.set_xticks(ticks)
    ax.set_xticklabels([
        next(g['column'] for g in mine
             if g['column'] != 'dense' and _x(g['column']) == t) for t in ticks
    ])
    ax.set_xlabel('sparsity of the prunable weights')
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _plot_budget(ax, mine, title, ylabel) -> None:
    """One panel: the metric against the training budget, a line per
    method and sparsity (min-max bars)."""
    lines = defaultdict(list)
    for g in mine:
        label = g['series'] + ('' if g['column'] == 'dense' else
                               f' {g["column"]}')
        lines[label].append(g)
    for label, gs in lines.items():
        if len({g['budget'] for g in gs}) < 2:
            continue
        gs.sort(key=lambda g: g['budget'])
        ax.errorbar([g['budget'] for g in gs], [g['mean'] for g in gs],
                    yerr=[[g['mean'] - g['min'] for g in gs],
                          [g['max'] - g['mean'] for g in gs]],
                    marker='o',
                    capsize=3,
                    ls='--' if label.startswith('dense') else '-',
                    label=label)
    budgets = sorted({g['budget'] for g in mine})
    ax.set_xscale('log', base=2)
    ax.set_xticks(budgets)
    ax.set_xticklabels([f'{b:g}x' for b in budgets])
    ax.set_xlabel("training budget (x the task's default iterations)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot(records: Sequence[Mapping[str, Any]], path: str) -> bool:
    """The metric against sparsity (one panel per study and task, at the
    default budget) and, where a study varies the budget, against the
    budget. Returns False, writing nothing, when no record makes a panel
    (every one at a single budget other than 1)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    groups = aggregate(records)
    panels = []
    keys = OrderedDict.fromkeys((g['study'], g['task']) for g in groups)
    for study, task in keys:
        mine = [g for g in groups if (g['study'], g['task']) == (study, task)]
        ylabel = TASK_METRICS[task][1]
        at_one = [g for g in mine if g['budget'] == 1]
        if at_one:
            panels.append((_plot_sparsity, at_one, f'{study}: {task}', ylabel))
        if len({g['budget'] for g in mine}) > 1:
            panels.append(
                (_plot_budget, mine, f'{study}: {task}, budget', ylabel))
    if not panels:
        return False
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (draw, mine, title, ylabel) in zip(axes[0], panels):
        draw(ax, mine, title, ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_path(out_dir: str) -> Optional[str]:
    """The grid's plot, or None when the last report wrote none."""
    path = osp.join(out_dir, 'plot.png')
    return path if osp.isfile(path) else None


def _provenance(grid: str, records: Sequence[Mapping[str, Any]],
                total: int, out_dir: str, readme: str) -> str:
    """Which cells a table comes from, when, where, and where they are."""
    dates = sorted({r['date'] for r in records})
    commits = sorted({r['commit'] for r in records})
    machines = sorted({r['machine'] for r in records})
    return (f'*{len(records)} of {total} cells of `python '
            f'benchmarks/quality/run_grid.py {grid}`, '
            f'{", ".join(dates) or "-"}, commit {", ".join(commits) or "-"}, '
            f'{"; ".join(machines) or "-"}. Every cell is a JSON file in '
            f'`{osp.relpath(out_dir, osp.dirname(readme))}/cells/`.*')


def readme_block(grid: str, records: Sequence[Mapping[str, Any]],
                 total: int, out_dir: str, readme: str) -> str:
    """The README's block for a grid: its table, where it comes from, and
    its plot."""
    plot = _plot_path(out_dir)
    lines = [
        format_table(records).rstrip(), '',
        _provenance(grid, records, total, out_dir, readme)
    ]
    if plot:
        lines += [
            '', f'![{grid} grid]'
            f'({osp.relpath(plot, osp.dirname(readme))})'
        ]
    return '\n'.join(lines)


def method_records(records: Sequence[Mapping[str, Any]],
                   method: str) -> List[Mapping[str, Any]]:
    """The records of the tables where ``method`` has a row: its own and,
    beside them, the dense ones (its references) of the same study and
    task, every seed, in grid order."""
    places = {(r.get('study', 'main'), r['task'])
              for r in records if r['method'] == method}
    return [
        r for r in records if (r.get('study', 'main'), r['task']) in places
        and (r['method'] == method or r.get('sparsity') is None)
    ]


def method_block(grid: str, method: str,
                 records: Sequence[Mapping[str, Any]], total: int,
                 out_dir: str, readme: str) -> str:
    """A method page's block: the grid's tables restricted to the method's
    rows and the dense rows, and which of the grid's ``total`` cells they
    come from."""
    mine = method_records(records, method)
    if not any(r['method'] == method for r in mine):
        return f'*No finished cell of {method} in the {grid} grid yet.*'
    return '\n'.join([
        format_table(mine).rstrip(), '',
        _provenance(grid, mine, total, out_dir, readme)
    ])


#: ``_markers(grid, HEADLINE)`` are the front page's headline markers.
HEADLINE = object()


def headline_block(grid: str, records: Sequence[Mapping[str, Any]],
                   total: int, out_dir: str, readme: str,
                   task: str = 'det') -> str:
    """The front page's block: the frontier table of ``task`` (a row per
    method, the highest sparsity within a point of dense) and where its
    cells come from."""
    mine = [r for r in records if r['task'] == task]
    return '\n'.join([
        frontier.headline(mine, task).rstrip(), '',
        _provenance(grid, mine, total, out_dir, readme)
    ])


def _markers(grid: str, method: Optional[str] = None) -> tuple:
    """The begin and end markers of a grid's block, of a method's block,
    or (``method`` is :data:`HEADLINE`) of the headline block."""
    if method is None:
        name = grid
    elif method is HEADLINE:
        name = f'{grid}:headline'
    else:
        name = f'{grid}:method={method}'
    return f'<!-- quality:{name}:begin -->', f'<!-- quality:{name}:end -->'


def _replace_between(text: str, begin: str, end: str, block: str) -> str:
    """``text`` with what stands between every ``begin`` ... ``end`` pair
    replaced by ``block``."""
    out, rest = [], text
    while begin in rest:
        head, rest = rest.split(begin, 1)
        if end not in rest:
            sys.exit(f'error: {begin} has no {end}')
        _, rest = rest.split(end, 1)
        out.append(f'{head}{begin}\n{block}\n{end}')
    return ''.join(out) + rest


def readme_methods(readme: str, grid: str) -> List[str]:
    """The method labels of the ``quality:<grid>:method=<label>`` blocks
    in ``readme``, in order of appearance, each once."""
    with open(readme) as f:
        text = f.read()
    found = re.findall(
        r'<!-- quality:' + re.escape(grid) + r':method=(.+?):begin -->',
        text)
    return list(OrderedDict.fromkeys(found))


def update_readme(readme: str,
                  grid: str,
                  block: Optional[str] = None,
                  methods: Optional[Mapping[str, str]] = None,
                  headline: Optional[str] = None) -> None:
    """Replace what stands between ``<!-- quality:<grid>:begin -->`` and
    ``<!-- quality:<grid>:end -->`` in ``readme`` with ``block``, between
    ``<!-- quality:<grid>:method=<label>:begin -->`` and its ``end`` with
    ``methods[label]``, and between ``<!-- quality:<grid>:headline:begin
    -->`` and its ``end`` with ``headline``. Exits when ``readme`` has none
    of these blocks."""
    with open(readme) as f:
        text = f.read()
    updates = []
    if block is not None:
        updates.append((*_markers(grid), block))
    if headline is not None:
        updates.append((*_markers(grid, HEADLINE), headline))
    for method, method_text in (methods or {}).items():
        updates.append((*_markers(grid, method), method_text))
    found = [(b, e, t) for b, e, t in updates if b in text and e in text]
    if not found:
        begin, end = _markers(grid)
        sys.exit(f'error: {readme} has no {begin} ... {end} block nor a '
                 f'quality:{grid}:method=<method> one')
    for begin, end, new in found:
        text = _replace_between(text, begin, end, new)
    with open(readme, 'w') as f:
        f.write(text)


def update_readmes(readmes: Sequence[str], grid: str,
                   records: Sequence[Mapping[str, Any]], total: int,
                   out_dir: str) -> None:
    """Fill the grid's block and its per-method blocks in each of
    ``readmes``."""
    for readme in readmes:
        methods = {
            method: method_block(grid, method, records, total, out_dir,
                                 readme)
            for method in readme_methods(readme, grid)
        }
        headline = None
        with open(readme) as f:
            if _markers(grid, HEADLINE)[0] in f.read():
                headline = headline_block(grid, records, total, out_dir,
                                          readme)
                frontier.plot(records, osp.join(out_dir, 'frontier.png'))
        update_readme(readme, grid,
                      readme_block(grid, records, total, out_dir, readme),
                      methods, headline)
