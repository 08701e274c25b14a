# Copyright (c) gap_mm contributors. All rights reserved.
"""Detection heads gap_mm registers in mmdet's ``MODELS`` (imported only
when mmdet is installed)."""
from .fixed_ssd_head import FixedSSDHead

__all__ = ['FixedSSDHead']
