# Copyright (c) gap_mm contributors. All rights reserved.
"""Offline analysis behind ``tools/analysis_tools/``: sparsity reports of
checkpoints, their FLOPs, and timelines of GaP schedules."""
from .flops import (InputShapeAction, check_input_shape, module_flops,
                    network_forward, zero_filter_flops)
from .schedule_timeline import (Event, Timeline, TimelineError, build_timeline,
                                find_gap_hook, format_timeline,
                                partition_color, partition_labels,
                                plot_timeline, schedule_from_config,
                                training_length)
from .sparsity_report import (NO_PARTITION, ReportError, build_model,
                              compute_report, format_report, load_checkpoint,
                              match_state_dict, plot_sparsity, prunable_numels,
                              report_from_files, resolve_partitions, write_csv)

__all__ = [
    'Event', 'InputShapeAction', 'NO_PARTITION', 'ReportError', 'Timeline',
    'TimelineError', 'check_input_shape', 'build_model', 'build_timeline',
    'compute_report', 'find_gap_hook', 'format_report', 'format_timeline',
    'load_checkpoint', 'match_state_dict', 'partition_color',
    'partition_labels', 'plot_sparsity', 'plot_timeline', 'prunable_numels',
    'report_from_files', 'resolve_partitions', 'schedule_from_config',
    'training_length', 'write_csv', 'module_flops', 'network_forward',
    'zero_filter_flops'
]
