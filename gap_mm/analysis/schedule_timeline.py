# Copyright (c) gap_mm contributors. All rights reserved.
"""The GaP schedule of a config as a timeline: a table and a Gantt chart.

Everything here comes from the config alone (no model is built): the
number of partitions is ``K`` when ``partitions`` is an int, else the
length of the list of regex groups; the training length comes from
``train_cfg``. The schedule itself is the one training builds
(:func:`gap_mm.schedules.build_schedule`), so the timeline and the checks
(:meth:`~gap_mm.schedules.BaseGaPSchedule.check_fits`) are those of
training.
"""
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Sequence, Tuple

from mmengine.config import Config

from gap_mm.schedules import BaseGaPSchedule, Segment, build_schedule


class TimelineError(ValueError):
    """The config does not say enough to draw its GaP schedule."""


class Event(NamedTuple):
    """Partition ``partition`` is grown or pruned before step ``step``.

    A prune at ``step`` happens at the end of step ``step - 1`` (the end of
    the partition's dense segment), as GaPHook applies it.
    """
    step: int
    partition: int
    kind: str  # 'grow' or 'prune'


@dataclass
class Timeline:
    """The schedule over ``[0, max_steps)``: segments and events.

    Args:
        schedule (BaseGaPSchedule): The schedule.
        max_steps (int): Training length in ``schedule.unit``.
        segments (list[Segment]): ``schedule.segments(max_steps)``.
        events (list[Event]): Grows and prunes, in order of step.
        partition_labels (list[str]): One label per partition.
    """
    schedule: BaseGaPSchedule
    max_steps: int
    segments: List[Segment]
    events: List[Event]
    partition_labels: List[str] = field(default_factory=list)

    @property
    def num_partitions(self) -> int:
        return self.schedule.num_partitions

    @property
    def unit(self) -> str:
        return self.schedule.unit

    @property
    def finetune_start(self) -> Optional[int]:
        start = self.schedule.finetune_start()
        return start if start is not None and start < self.max_steps \
            else None

    def prune_events(self) -> List[Event]:
        return [e for e in self.events if e.kind == 'prune']

    def grow_events(self) -> List[Event]:
        return [e for e in self.events if e.kind == 'grow']


def find_gap_hook(cfg: Config) -> Optional[dict]:
    """The first sparsity hook (``GaPHook`` or another subclass of
    ``BaseSparsityHook``) of ``cfg.custom_hooks``, or None."""
    from gap_mm.prerun_checks import sparsity_hooks
    hooks = sparsity_hooks(cfg)
    return hooks[0] if hooks else None


def num_partitions_of(partitions) -> int:
    """K from a GaPHook ``partitions`` value: an int or a list of groups."""
    if isinstance(partitions, int) and not isinstance(partitions, bool) \
            and partitions >= 1:
        return partitions
    if isinstance(partitions, (list, tuple)) and partitions:
        return len(partitions)
    raise TimelineError(f'GaPHook partitions must be a positive int or a '
                        f'list of regex groups, but got {partitions!r}')


def partition_labels(partitions) -> List[str]:
    """``'p<k>'``, followed by the regexes of the group when given."""
    k = num_partitions_of(partitions)
    if isinstance(partitions, int):
        return [f'p{i}' for i in range(k)]
    labels = []
    for i, group in enumerate(partitions):
        regexes = [group] if isinstance(group, str) else list(group)
        text = ' '.join(str(r) for r in regexes)
        if len(text) > 32:
            text = text[:31] + '…'
        labels.append(f'p{i}  {text}')
    return labels


def schedule_from_config(cfg: Config) -> Tuple[BaseGaPSchedule, dict]:
    """Build the schedule of the config's GaPHook, as training does.

    Returns:
        tuple[BaseGaPSchedule, dict]: The schedule and the hook's config.

    Raises:
        TimelineError: If the config has no GaPHook or no schedule.
        ScheduleError: If the schedule config is invalid (the message
            training gives).
    """
    hook = find_gap_hook(cfg)
    if hook is None:
        raise TimelineError(
            "the config has no GaPHook in custom_hooks (type='GaPHook'), so "
            'it has no GaP schedule to show')
    if hook.get('schedule') is None:
        raise TimelineError(
            "the GaPHook has no schedule, e.g. schedule=dict(type='cyclic', "
            "period=..., num_rounds=...) or dict(type='static')")
    num_partitions = num_partitions_of(hook.get('partitions', 4))
    return build_schedule(dict(hook['schedule']), num_partitions), hook


def training_length(cfg: Config,
                    schedule: BaseGaPSchedule,
                    iters_per_epoch: Optional[int] = None) -> Tuple[int, str]:
    """The run length that GaPHook checks the schedule against.

    Args:
        cfg (Config): The config (its ``train_cfg``).
        schedule (BaseGaPSchedule): Counts epochs or iterations.
        iters_per_epoch (int, optional): Needed when an iteration schedule
            runs in an epoch-based loop: training uses
            ``max_epochs * len(train_dataloader)``, which the config alone
            does not give.

    Returns:
        tuple[int, str]: ``max_steps`` in ``schedule.unit`` and a line that
        says where it comes from.
    """
    train_cfg = cfg.get('train_cfg') or {}
    loop = train_cfg.get('type', '')
    epoch_loop = 'max_epochs' in train_cfg or train_cfg.get('by_epoch') \
        is True or 'EpochBased' in str(loop)
    if epoch_loop:
        max_epochs = train_cfg.get('max_epochs')
        if max_epochs is None:
            raise TimelineError(f'train_cfg {dict(train_cfg)} has no '
                                f'max_epochs')
        if schedule.by_epoch:
            return max_epochs, f'train_cfg.max_epochs = {max_epochs}'
        if iters_per_epoch is None:
            raise TimelineError(
                f'the GaP schedule counts iterations (by_epoch=False) but '
                f'the config trains with an epoch-based loop for '
                f'{max_epochs} epochs, so the run length in iterations is '
                f'max_epochs x iterations per epoch, and iterations per '
                f'epoch = len(train_dataloader) (dataset size / (batch size '
                f'x number of GPUs)) is not in the config. Pass it with '
                f'--iters-per-epoch N')
        if iters_per_epoch < 1:
            raise TimelineError(f'--iters-per-epoch must be >= 1, but got '
                                f'{iters_per_epoch}')
        return max_epochs * iters_per_epoch, (
            f'train_cfg.max_epochs {max_epochs} x {iters_per_epoch} '
            f'iterations per epoch = {max_epochs * iters_per_epoch}')
    max_iters = train_cfg.get('max_iters')
    if max_iters is None:
        raise TimelineError(f'train_cfg {dict(train_cfg)} has neither '
                            f'max_epochs nor max_iters')
    if schedule.by_epoch:
        raise TimelineError(
            f'an epoch-based GaP schedule (by_epoch=True) needs an '
            f'epoch-based train loop, but train_cfg trains for {max_iters} '
            f'iterations')
    return max_iters, f'train_cfg.max_iters = {max_iters}'


def build_timeline(schedule: BaseGaPSchedule,
                   max_steps: int,
                   labels: Optional[Sequence[str]] = None) -> Timeline:
    """Cut ``[0, max_steps)`` into segments and list grows and prunes.

    Training starts with every partition pruned (by the magnitude of the
    initial weights); that first prune is not an event here. A partition
    that is dense in a segment and not in the next one is pruned at the
    segment's end; one still dense at ``max_steps`` is pruned there (after
    the last step).
    """
    segments = schedule.segments(max_steps)
    events: List[Event] = []
    dense = frozenset()
    for seg in segments:
        events += [
            Event(seg.start, k, 'prune') for k in sorted(dense - seg.dense)
        ]
        events += [
            Event(seg.start, k, 'grow') for k in sorted(seg.dense - dense)
        ]
        dense = seg.dense
    events += [Event(max_steps, k, 'prune') for k in sorted(dense)]
    if labels is None:
        labels = [f'p{k}' for k in range(schedule.num_partitions)]
    return Timeline(schedule, max_steps, segments, events, list(labels))


def _fmt_dense(dense) -> str:
    return ','.join(f'p{k}' for k in sorted(dense)) or '-'


def format_timeline(timeline: Timeline) -> str:
    """The segments as a text table, with the event at the end of each."""
    prunes = {}
    for e in timeline.prune_events():
        prunes.setdefault(e.step, []).append(e.partition)
    header = ('start', 'end', 'dense', 'phase', 'round', 'at end')
    body = []
    for seg in timeline.segments:
        then = prunes.get(seg.end)
        body.append((str(seg.start), str(seg.end), _fmt_dense(seg.dense),
                     seg.phase, '-' if seg.round < 0 else str(seg.round),
                     'prune ' + _fmt_dense(then) if then else ''))
    widths = [
        max(len(h), *(len(row[i]) for row in body))
        for i, h in enumerate(header)
    ]

    def fmt(row):
        cells = [v.rjust(w) for v, w in zip(row[:2], widths[:2])]
        cells += [v.ljust(w) for v, w in zip(row[2:], widths[2:])]
        return ' | '.join(cells).rstrip()

    s = timeline.schedule
    lines = [
        f'GaP schedule {s!r}',
        f'{timeline.max_steps} {timeline.unit}; [start, end) in '
        f'{timeline.unit}, 0-based; every partition is pruned at step 0',
        fmt(header), '-+-'.join('-' * w for w in widths)
    ]
    lines += [fmt(row) for row in body]
    ft = timeline.finetune_start
    prunes_list = timeline.prune_events()
    lines.append(f'{len(prunes_list)} prune events: ' +
                 (', '.join(f'p{e.partition}@{e.step}'
                            for e in prunes_list) or 'none'))
    lines.append('fine-tune (all masks fixed): ' + (
        f'from {ft} to {timeline.max_steps} ({timeline.max_steps - ft} '
        f'{timeline.unit})' if ft is not None else 'none'))
    return '\n'.join(lines)


def plot_timeline(timeline: Timeline,
                  out_file: str,
                  title: Optional[str] = None,
                  iters_per_epoch: Optional[int] = None,
                  dpi: int = 110) -> None:
    """Draw a Gantt chart: one row per partition, a bar per dense period,
    a marker per prune, the fine-tune shaded.

    Args:
        timeline (Timeline): From :func:`build_timeline`.
        out_file (str): The PNG to write.
        title (str, optional): Defaults to the schedule's repr.
        iters_per_epoch (int, optional): Adds an epoch axis on top of an
            iteration schedule.
        dpi (int): Resolution. Defaults to 110.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    k_count = timeline.num_partitions
    max_steps = timeline.max_steps
    fig = Figure(figsize=(12, 1.9 + 0.55 * k_count))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = [partition_color(k) for k in range(k_count)]

    handles = []
    warmup = [
        s for s in timeline.segments if s.phase == 'sparse' and s.round < 0
        and not s.dense and s.start == 0 and timeline.finetune_start != 0
    ]
    if warmup and timeline.grow_events():
        ax.axvspan(0, warmup[0].end, color='#fff3c4', zorder=0)
        handles.append(Patch(color='#fff3c4', label='sparse warm-up'))
    ft = timeline.finetune_start
    if ft is not None:
        ax.axvspan(ft, max_steps, color='0.86', zorder=0)
        handles.append(Patch(color='0.86', label='fine-tune (masks fixed)'))
    for k in range(k_count):
        spans = [(s.start, s.end - s.start) for s in timeline.segments
                 if k in s.dense]
        if spans:
            ax.broken_barh(
                spans, (k - 0.32, 0.64),
                facecolors=colors[k],
                edgecolor='black',
                linewidth=0.5,
                zorder=2)
    handles.append(
        Patch(facecolor='0.6', edgecolor='black', label='dense (grown)'))
    prunes = timeline.prune_events()
    if prunes:
        handles.append(
            ax.scatter([e.step for e in prunes], [e.partition for e in prunes],
                       marker='v',
                       s=70,
                       color='#c0392b',
                       edgecolor='black',
                       linewidth=0.5,
                       zorder=4,
                       label='prune'))
    # Round boundaries.
    starts = {}
    for seg in timeline.segments:
        if seg.round >= 0:
            starts.setdefault(seg.round, seg.start)
    for r, start in sorted(starts.items()):
        ax.axvline(start, color='0.4', linestyle=':', linewidth=0.8, zorder=1)
        ax.text(
            start,
            -0.7,
            f' round {r}',
            fontsize=8,
            color='0.3',
            va='top',
            ha='left')

    ax.set_xlim(0, max_steps)
    ax.set_ylim(k_count - 0.5, -0.75)
    ax.set_yticks(range(k_count))
    ax.set_yticklabels(
        timeline.partition_labels or [f'p{k}' for k in range(k_count)],
        fontsize=8)
    ax.set_xlabel(f'{timeline.unit[:-1]} (0-based; a step t spans '
                  f'[t, t+1))')
    ax.grid(axis='x', color='0.9', zorder=0)
    ax.set_axisbelow(True)
    if iters_per_epoch and not timeline.schedule.by_epoch:
        ipe = float(iters_per_epoch)
        top = ax.secondary_xaxis(
            'top', functions=(lambda x: x / ipe, lambda x: x * ipe))
        top.set_xlabel('epoch')
    handles.append(
        Patch(color='none', label='(every partition is\n'
              'pruned at step 0)'))
    ax.legend(
        handles=handles,
        loc='upper left',
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
        frameon=False)
    s = timeline.schedule
    if title is None:
        title = f'{s!r}\n{max_steps} {timeline.unit}'
        if ft is not None:
            title += f', fine-tune from {ft}'
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_file, dpi=dpi)


def partition_color(k) -> str:
    """Colour of partition ``k`` (tab10 cycle); grey for no partition."""
    palette = ('#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd',
               '#8c564b', '#e377c2', '#bcbd22', '#17becf', '#393b79')
    if isinstance(k, int) and not isinstance(k, bool) and k >= 0:
        return palette[k % len(palette)]
    return '#b0b0b0'
