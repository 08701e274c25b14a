# Copyright (c) gap_mm contributors. All rights reserved.
from .gap_hook import GaPHook

__all__ = ['GaPHook']
