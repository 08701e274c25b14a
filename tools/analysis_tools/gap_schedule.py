# Copyright (c) gap_mm contributors. All rights reserved.
"""Show when each GaP partition is dense, pruned and fine-tuned.

Usage::

    python tools/analysis_tools/gap_schedule.py CONFIG [--out-png F] \
        [--iters-per-epoch N] [--cfg-options KEY=VALUE ...]

Reads the config alone (no model, no data): the GaPHook's ``partitions``
(K = the int, or the number of regex groups) and ``schedule``, and the
training length from ``train_cfg``. Prints the segments (start, end, dense
partition, phase, round, the prune at the end) and optionally draws a Gantt
chart. A schedule that does not fit the run fails with the message
training would give, and exit code 1.
"""
import argparse
import sys
from typing import List, Optional

from mmengine.config import Config, DictAction

from gap_mm.analysis import (TimelineError, build_timeline, format_timeline,
                             partition_labels, plot_timeline,
                             schedule_from_config, training_length)
from gap_mm.errors import GaPConfigError
from gap_mm.prerun_checks import merge_cfg_options


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw the GaP schedule of a config')
    parser.add_argument('config', help='config file with a GaPHook')
    parser.add_argument('--out-png', help='write a Gantt chart here')
    parser.add_argument(
        '--iters-per-epoch',
        type=int,
        help='len(train_dataloader): needed when an iteration schedule '
        '(by_epoch=False) runs in an EpochBasedTrainLoop; also adds an '
        'epoch axis to the chart')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, e.g. '
        'custom_hooks.0.schedule.period=2')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        cfg = Config.fromfile(args.config)
    except FileNotFoundError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    try:
        merge_cfg_options(cfg, args.cfg_options)
        schedule, hook = schedule_from_config(cfg)
        max_steps, source = training_length(cfg, schedule,
                                            args.iters_per_epoch)
        schedule.check_fits(max_steps)  # the error training gives
    except (GaPConfigError, TimelineError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    timeline = build_timeline(schedule, max_steps,
                              partition_labels(hook.get('partitions', 4)))
    print(f'training length: {source}')
    print(format_timeline(timeline))
    if args.out_png:
        plot_timeline(
            timeline, args.out_png, iters_per_epoch=args.iters_per_epoch)
        print(f'chart written to {args.out_png}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
