# Copyright (c) gap_mm contributors. All rights reserved.
from .base_method_hook import EVENTS_FILE, BaseMethodHook
from .base_sparsity_hook import BaseSparsityHook
from .drop_grow_hook import DropGrowHook
from .gap_hook import GaPHook
from .gmp_hook import GMPHook
from .greg_hook import GRegHook
from .rigl_hook import RigLHook
from .scs_hook import SCSHook
from .set_hook import SETHook

__all__ = [
    'EVENTS_FILE', 'BaseMethodHook', 'BaseSparsityHook', 'DropGrowHook',
    'GMPHook', 'GRegHook', 'GaPHook', 'RigLHook', 'SCSHook', 'SETHook'
]
