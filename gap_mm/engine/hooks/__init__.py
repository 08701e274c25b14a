# Copyright (c) gap_mm contributors. All rights reserved.
from .base_sparsity_hook import BaseSparsityHook
from .gap_hook import GaPHook

__all__ = ['BaseSparsityHook', 'GaPHook']
