# Copyright (c) gap_mm authors. All rights reserved.
from .config_utils import (GAP_CFG_VARIABLES, check_data_paths,
                           changed_top_level_keys, check_gap_hook_options,
                           check_gap_variable_keys,
                           merge_cfg_options, resolve_gap_variables,
                           sparsity_hooks)
from .dist_utils import (destroy_dist, export_local_rank, has_accelerator,
                         init_cpu_dist, setup_cpu_distributed)
from .safe_load import (allow_mmengine_checkpoint_globals,
                        mmengine_checkpoint_safe_globals)

__all__ = [
    'GAP_CFG_VARIABLES', 'changed_top_level_keys', 'check_data_paths',
    'check_gap_hook_options',
    'check_gap_variable_keys', 'merge_cfg_options', 'resolve_gap_variables',
    'sparsity_hooks', 'setup_cpu_distributed', 'init_cpu_dist',
    'has_accelerator', 'export_local_rank', 'destroy_dist',
    'allow_mmengine_checkpoint_globals', 'mmengine_checkpoint_safe_globals'
]
