# Copyright (c) gap_mm contributors. All rights reserved.
"""Models gap_mm registers in MMEngine's root ``MODELS``."""
from .scs_model import SCSModel
from .slim_model import SlimModel

__all__ = ['SCSModel', 'SlimModel']
