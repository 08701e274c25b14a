# Copyright (c) gap_mm contributors. All rights reserved.
"""Per-layer sparsity of a checkpoint, counted from its weights.

Works for any MMEngine checkpoint (mmdet, mmdet3d, ...), dense or sparse,
trained with or without gap_mm: the non-zeros are counted in the weights
themselves. The prunable layers are those the config's GaPHook selects
(``module_types`` / ``include`` / ``exclude`` / ``prune_output_layers``)
or, without a GaPHook, those a hook selects by default (the weights of
convs, transposed convs, linear layers and attention projections, less the
frozen ones and the output layers of heads). The partition of a layer comes
from the checkpoint's ``gap_state`` when it has one, else from the GaPHook's
``partitions``, else it is ``'-'``.
"""
import copy
import csv
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from gap_mm.checkpoint import load_checkpoint as load_ckpt
from gap_mm.checkpoint import partitions as saved_partitions
from gap_mm.checkpoint import read_state, split_checkpoint
from gap_mm.errors import GaPConfigError
from gap_mm.sparsity import (PrunableParams, build_partitions,
                             resolve_module_types, select_prunable)
from .schedule_timeline import find_gap_hook, partition_color

Partition = Union[int, str]

#: Partition of a layer that is in none.
NO_PARTITION = '-'


class ReportError(ValueError):
    """A checkpoint or config the report cannot be made from."""


def _preview(names: Sequence[str], limit: int = 10) -> str:
    names = list(names)
    shown = ', '.join(names[:limit])
    more = f', ... ({len(names)} in all)' if len(names) > limit else ''
    return f'[{shown}{more}]'


# ------------------------------------------------------------------ loading
def load_checkpoint(
        path: str) -> Tuple[Dict[str, torch.Tensor], Optional[dict]]:
    """Load ``state_dict`` and the sparsity state (or None) of a checkpoint.

    Read through :func:`gap_mm.checkpoint.load_checkpoint`
    (``weights_only=True``); a bare state_dict (a dict of tensors) is
    accepted too.

    Raises:
        ReportError: If the file is missing, is not a checkpoint, or its
            sparsity state cannot be read.
    """
    try:
        ckpt = load_ckpt(path)
        state_dict, _ = split_checkpoint(ckpt, path)
        state = read_state(ckpt, path)
    except GaPConfigError as err:
        raise ReportError(str(err)) from err
    return state_dict, state


def build_model(cfg) -> nn.Module:
    """Build ``cfg.model`` in the config's default scope, without weights.

    The backbone's ``init_cfg`` is dropped (no download); ``init_weights``
    is not called: the weights come from the checkpoint.

    Raises:
        ReportError: If the model cannot be built.
    """
    from mmengine.registry import MODELS, init_default_scope
    if cfg.get('model') is None:
        raise ReportError('the config has no model')
    model_cfg = copy.deepcopy(cfg.model)
    if isinstance(model_cfg.get('backbone'), Mapping):
        model_cfg['backbone']['init_cfg'] = None
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    try:
        model = MODELS.build(model_cfg)
    except (KeyError, TypeError, ValueError, ImportError,
            AttributeError) as err:
        raise ReportError(f'cannot build the model of the config: '
                          f'{type(err).__name__}: {err}') from err
    return model.eval()


def match_state_dict(model: nn.Module,
                     state_dict: Mapping[str, torch.Tensor],
                     name: str = 'the checkpoint') -> Dict[str, torch.Tensor]:
    """Check that ``state_dict`` belongs to ``model``; strip ``module.``.

    Every parameter and buffer of the model must be there with its shape,
    and nothing else. Missing buffers are tolerated (old checkpoints lack
    ``num_batches_tracked``).

    Raises:
        ReportError: Naming the missing, unexpected and mis-shaped keys.
    """
    sd = dict(state_dict)
    if sd and all(k.startswith('module.') for k in sd):
        sd = {k[len('module.'):]: v for k, v in sd.items()}
    expected = model.state_dict()
    params = {n for n, _ in model.named_parameters()}
    missing = [k for k in expected if k not in sd and k in params]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        f'{k} ({list(sd[k].shape)} in the checkpoint, '
        f'{list(expected[k].shape)} in the model)' for k in expected
        if k in sd and sd[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f'{len(missing)} parameters of the model are '
                        f'missing: {_preview(missing)}')
    if unexpected:
        problems.append(f'{len(unexpected)} keys are not in the model: '
                        f'{_preview(unexpected)}')
    if mismatched:
        problems.append(f'{len(mismatched)} shapes differ: '
                        f'{_preview(mismatched, 5)}')
    if problems:
        raise ReportError(
            f'the state_dict of {name} does not match the model built from '
            f'the config ({type(model).__name__}): ' + '; '.join(problems))
    return sd


# --------------------------------------------------------------- analysis
def prunable_selection(model: nn.Module,
                       hook: Optional[Mapping] = None) -> PrunableParams:
    """The prunable weights, in model order, with their layouts.

    With a GaPHook config, its ``module_types`` / ``include`` /
    ``exclude`` / ``prune_output_layers`` select them as in training;
    without one, the hooks' defaults. The frozen weights are those the
    model built from the config freezes (``frozen_stages``), as in
    training.
    """
    hook = hook or {}
    try:
        return select_prunable(
            model, resolve_module_types(hook.get('module_types')),
            hook.get('include'), hook.get('exclude'),
            bool(hook.get('prune_output_layers', False)))
    except ValueError as err:
        raise ReportError(f'the GaPHook selection of prunable layers does '
                          f'not fit the model: {err}') from err


def prunable_numels(model: nn.Module,
                    hook: Optional[Mapping] = None) -> Dict[str, int]:
    """Parameter counts of the prunable weights, in model order (see
    :func:`prunable_selection`)."""
    return OrderedDict(
        (n, p.numel()) for n, p in prunable_selection(model, hook).items())


def resolve_partitions(
    numels: Mapping[str, int],
    gap_state: Optional[Mapping] = None,
    hook: Optional[Mapping] = None
) -> Tuple[Dict[str, Partition], str, List[str]]:
    """The partition of every prunable layer.

    Returns:
        tuple: ``{name: k or '-'}``, where the partitions come from
        (``'checkpoint'``, ``'config'`` or ``'none'``) and notes on layers
        that the checkpoint's partitions and the selection disagree on.
    """
    notes: List[str] = []
    groups = None
    if gap_state is not None:
        groups = saved_partitions(gap_state)
    if groups:
        source = 'checkpoint'
        owner = {n: k for k, group in enumerate(groups) for n in group}
        outside = [n for n in owner if n not in numels]
        if outside:
            notes.append(f'{len(outside)} layers of the checkpoint\'s GaP '
                         f'partitions are not prunable under the config: '
                         f'{_preview(outside)}')
    elif hook is not None and hook.get('partitions', 4) is not None:
        source = 'config'
        try:
            owner = {
                n: k
                for k, group in enumerate(
                    build_partitions(numels, hook.get('partitions', 4)))
                for n in group
            }
        except ValueError as err:
            notes.append(f'the GaPHook partitions do not fit the model: '
                         f'{err}')
            owner, source = {}, 'none'
    else:
        return {n: NO_PARTITION for n in numels}, 'none', notes
    unowned = [n for n in numels if n not in owner]
    if unowned and source == 'checkpoint':
        notes.append(f'{len(unowned)} prunable layers are in no partition '
                     f'of the checkpoint: {_preview(unowned)}')
    return {n: owner.get(n, NO_PARTITION) for n in numels}, source, notes


def _totals(numel: int, nonzero: int) -> Dict[str, object]:
    return dict(
        numel=numel,
        nonzero=nonzero,
        sparsity=1.0 - nonzero / numel if numel else 0.0)


def compute_report(model: nn.Module,
                   state_dict: Mapping[str, torch.Tensor],
                   hook: Optional[Mapping] = None,
                   gap_state: Optional[Mapping] = None,
                   name: str = 'the checkpoint') -> dict:
    """Per-layer and total sparsity of ``state_dict`` (weights of
    ``model``).

    Args:
        model (nn.Module): The model the weights belong to (its weights are
            not used).
        state_dict (Mapping[str, Tensor]): The weights.
        hook (Mapping, optional): The config's GaPHook entry.
        gap_state (Mapping, optional): The checkpoint's ``gap_state``.
        name (str): The checkpoint, for error messages.

    Returns:
        dict: JSON data: ``layers`` (rows of ``name, shape, numel,
        nonzero, sparsity, partition, out_dim``, one per prunable layer;
        ``out_dim`` is the dim of its output channels, 1 for a transposed
        conv),
        ``partitions`` (totals by partition), ``prunable`` and ``model``
        (totals over the prunable layers and over every parameter),
        ``partition_source`` and ``notes``.
    """
    sd = match_state_dict(model, state_dict, name)
    selection = prunable_selection(model, hook)
    numels = OrderedDict((n, p.numel()) for n, p in selection.items())
    owner, source, notes = resolve_partitions(numels, gap_state, hook)
    rows = []
    for layer in numels:
        weight = sd[layer]
        nonzero = int(torch.count_nonzero(weight))
        rows.append(
            dict(
                name=layer,
                shape=list(weight.shape),
                numel=weight.numel(),
                nonzero=nonzero,
                sparsity=1.0 - nonzero / max(1, weight.numel()),
                partition=owner[layer],
                out_dim=selection.layouts[layer].out_dim))
    partitions = []
    for k in sorted({r['partition']
                     for r in rows},
                    key=lambda p: (isinstance(p, str), str(p).zfill(9))):
        part = [r for r in rows if r['partition'] == k]
        partitions.append(
            dict(
                partition=k,
                layers=len(part),
                **_totals(
                    sum(r['numel'] for r in part),
                    sum(r['nonzero'] for r in part))))
    model_numel = model_nonzero = 0
    for pname, _ in model.named_parameters():
        model_numel += sd[pname].numel()
        model_nonzero += int(torch.count_nonzero(sd[pname]))
    return dict(
        layers=rows,
        partitions=partitions,
        prunable=_totals(
            sum(r['numel'] for r in rows), sum(r['nonzero'] for r in rows)),
        model=_totals(model_numel, model_nonzero),
        partition_source=source,
        notes=notes)


# ---------------------------------------------------------------- output
def _pct(value: float) -> str:
    return f'{100 * value:.2f}%'


def format_report(report: dict,
                  compare: Optional[dict] = None,
                  labels: Optional[Sequence[str]] = None) -> str:
    """A text table of :func:`compute_report`, with totals by partition,
    over the prunable layers and over the whole model. ``compare`` (a
    report of another checkpoint of the same model) adds its sparsity as a
    column. ``labels`` name the two checkpoints; defaults to A and B."""
    labels = labels or ('A', 'B')
    if compare is not None:
        header = ('layer', 'shape', 'params', f'non-zero {labels[0]}',
                  f'sparsity {labels[0]}', f'sparsity {labels[1]}',
                  'partition')
    else:
        header = ('layer', 'shape', 'params', 'non-zero', 'sparsity',
                  'partition')
    # with --flops-shape: the layer's MFLOPs and those of its non-zero
    # weights (``report['flops']``, see zero_filter_flops)
    by_layer = (report.get('flops') or {}).get('by_layer')
    if by_layer:
        header = header + ('MFLOPs (non-zero)', )
    other = {r['name']: r for r in (compare or {}).get('layers', [])}

    def line(name, shape, numel, nonzero, sparsity, sparsity_b, partition):
        cells = [name, shape, str(numel), str(nonzero), _pct(sparsity)]
        if compare is not None:
            cells.append('' if sparsity_b is None else _pct(sparsity_b))
        cells.append(str(partition))
        if by_layer:
            f = by_layer.get(name)
            cells.append(f'{f[0] / 1e6:.2f} ({f[1] / 1e6:.2f})' if f else '')
        return cells

    body = [
        line(r['name'], 'x'.join(map(str, r['shape'])), r['numel'],
             r['nonzero'], r['sparsity'],
             other[r['name']]['sparsity'] if r['name'] in other else None,
             r['partition']) for r in report['layers']
    ]
    other_parts = {
        p['partition']: p
        for p in (compare or {}).get('partitions', [])
    }
    totals = []
    if any(p['partition'] != NO_PARTITION for p in report['partitions']):
        for p in report['partitions']:
            b = other_parts.get(p['partition'])
            totals.append(
                line(f"partition {p['partition']} ({p['layers']} layers)", '',
                     p['numel'], p['nonzero'], p['sparsity'],
                     b['sparsity'] if b else None, p['partition']))
    for key, what in (('prunable', f"prunable total "
                       f"({len(report['layers'])} layers)"),
                      ('model', 'model total (all parameters)')):
        t = report[key]
        totals.append(
            line(what, '', t['numel'], t['nonzero'], t['sparsity'],
                 compare[key]['sparsity'] if compare else None, ''))
    widths = [
        max(len(h), *(len(c[i]) for c in body + totals))
        for i, h in enumerate(header)
    ]

    def fmt(cells):
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return ' | '.join(out)

    rule = '-+-'.join('-' * w for w in widths)
    return '\n'.join([fmt(header), rule] + [fmt(b) for b in body] + [rule] +
                     [fmt(t) for t in totals])


def write_csv(path: str, report: dict, compare: Optional[dict] = None) -> None:
    """One row per prunable layer, then the totals (``shape`` empty).

    Columns ``name, shape, numel, nonzero, sparsity, partition``, plus
    ``nonzero_b, sparsity_b`` with ``compare``.
    """
    fields = ['name', 'shape', 'numel', 'nonzero', 'sparsity', 'partition']
    if compare is not None:
        fields += ['nonzero_b', 'sparsity_b']
    other = {r['name']: r for r in (compare or {}).get('layers', [])}
    other_parts = {
        p['partition']: p
        for p in (compare or {}).get('partitions', [])
    }

    def row(name, shape, item, partition, b):
        out = dict(
            name=name,
            shape=shape,
            numel=item['numel'],
            nonzero=item['nonzero'],
            sparsity=f"{item['sparsity']:.6f}",
            partition=partition)
        if compare is not None:
            out['nonzero_b'] = b['nonzero'] if b else ''
            out['sparsity_b'] = f"{b['sparsity']:.6f}" if b else ''
        return out

    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in report['layers']:
            writer.writerow(
                row(r['name'], 'x'.join(map(str, r['shape'])), r,
                    r['partition'], other.get(r['name'])))
        for p in report['partitions']:
            if p['partition'] != NO_PARTITION:
                writer.writerow(
                    row(f"partition {p['partition']} total", '', p,
                        p['partition'], other_parts.get(p['partition'])))
        for key in ('prunable', 'model'):
            writer.writerow(
                row(f'{key} total', '', report[key], '',
                    compare[key] if compare else None))


def plot_sparsity(reports: Sequence[dict],
                  labels: Sequence[str],
                  out_file: str,
                  title: Optional[str] = None,
                  dpi: int = 100) -> None:
    """Horizontal bar chart of per-layer sparsity, coloured by partition.

    One bar per prunable layer (top to bottom in model order); with two
    reports, grouped bars: the second checkpoint's hatched. The figure grows
    with the number of layers, so ~100 layers stay legible.

    Args:
        reports (Sequence[dict]): One or two :func:`compute_report` results
            of the same model; the partitions of the first colour the bars.
        labels (Sequence[str]): A label per report.
        out_file (str): The PNG to write.
        title (str, optional): Defaults to the totals.
        dpi (int): Resolution. Defaults to 100.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    base = reports[0]
    names = [r['name'] for r in base['layers']]
    n = len(names)
    per_layer = 0.19 if len(reports) == 1 else 0.3
    fig = Figure(figsize=(11, max(4.0, 2.2 + per_layer * n)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = [partition_color(r['partition']) for r in base['layers']]
    height = 0.8 / len(reports)
    hatches = (None, '////')
    for i, (report, label) in enumerate(zip(reports, labels)):
        by_name = {r['name']: r for r in report['layers']}
        values = [
            100 * by_name[name]['sparsity'] if name in by_name else 0.0
            for name in names
        ]
        offset = (i - (len(reports) - 1) / 2) * height
        ax.barh([y + offset for y in range(n)],
                values,
                height=height,
                color=colors,
                edgecolor='black' if i else 'none',
                linewidth=0.3,
                hatch=hatches[i % 2],
                alpha=1.0 if i == 0 else 0.55,
                zorder=2)
        ax.axvline(
            100 * report['prunable']['sparsity'],
            color='black',
            linestyle=('--', ':')[i % 2],
            linewidth=1,
            zorder=3)
        if len(reports) == 1:
            for y, v in enumerate(values):
                inside = v >= 12  # the value in the bar's end, else after
                ax.text(
                    v - 0.8 if inside else v + 0.8,
                    y,
                    f'{v:.1f}',
                    va='center',
                    ha='right' if inside else 'left',
                    fontsize=6,
                    color='white' if inside else '0.25',
                    zorder=4)
    ax.set_yticks(range(n))
    ax.set_yticklabels(names, fontsize=7 if n > 40 else 8)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(0, 105)
    ax.set_xlabel('sparsity of the weights (% zeros)')
    ax.grid(axis='x', color='0.88', zorder=0)
    ax.set_axisbelow(True)

    handles = []
    seen = []
    for r in base['layers']:
        if r['partition'] not in seen:
            seen.append(r['partition'])
    for p in seen:
        text = 'no partition' if p == NO_PARTITION else f'partition {p}'
        handles.append(Patch(color=partition_color(p), label=text))
    for i, (report, label) in enumerate(zip(reports, labels)):
        handles.append(
            Patch(
                facecolor='0.7',
                edgecolor='black',
                hatch=hatches[i % 2],
                alpha=1.0 if i == 0 else 0.55,
                label=f"{label}: prunable "
                f"{100 * report['prunable']['sparsity']:.1f}% "
                f"({('dashed', 'dotted')[i % 2]} line)"))
    ax.legend(
        handles=handles,
        loc='upper left',
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
        frameon=False)
    if title is None:
        title = 'Per-layer sparsity of the prunable weights\n' + '\n'.join(
            f"{label}: {100 * r['prunable']['sparsity']:.2f}% of "
            f"{r['prunable']['numel']:,} prunable weights, "
            f"{100 * r['model']['sparsity']:.2f}% of all "
            f"{r['model']['numel']:,} parameters"
            for r, label in zip(reports, labels))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_file, dpi=dpi)


def report_from_files(cfg,
                      checkpoint: str,
                      model: Optional[nn.Module] = None) -> dict:
    """:func:`compute_report` of a checkpoint file under a config."""
    state_dict, gap_state = load_checkpoint(checkpoint)
    if model is None:
        model = build_model(cfg)
    return compute_report(
        model, state_dict, find_gap_hook(cfg), gap_state, name=checkpoint)
