# Copyright (c) gap_mm contributors. All rights reserved.
"""Models gap_mm registers in MMEngine's root ``MODELS``."""
from .slim_model import SlimModel

__all__ = ['SlimModel']
