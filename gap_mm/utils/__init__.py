# Copyright (c) gap_mm authors. All rights reserved.
"""Low-level helpers with no dependency on the rest of gap_mm: distributed
set-up on the CPU and the allow-list of ``torch.load(weights_only=True)``.

The tools' pre-run config checks are in :mod:`gap_mm.prerun_checks`, the
hooks' ``gap_*`` variables in :mod:`gap_mm.engine.gap_variables`.
"""
from .dist_utils import (destroy_dist, export_local_rank, has_accelerator,
                         init_cpu_dist, setup_cpu_distributed)
from .safe_load import (allow_mmengine_checkpoint_globals,
                        mmengine_checkpoint_safe_globals)

__all__ = [
    'setup_cpu_distributed', 'init_cpu_dist', 'has_accelerator',
    'export_local_rank', 'destroy_dist', 'allow_mmengine_checkpoint_globals',
    'mmengine_checkpoint_safe_globals'
]
