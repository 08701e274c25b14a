# Copyright (c) gap_mm contributors. All rights reserved.
"""Models gap_mm registers in MMEngine's root ``MODELS`` and, when mmdet is
installed, the detection heads of :mod:`gap_mm.models.dense_heads` in
mmdet's."""
from importlib.util import find_spec

from .scs_model import SCSModel
from .slim_model import SlimModel

__all__ = ['SCSModel', 'SlimModel']

# Detection needs mmdet (the `det` extra); without it nothing of mmdet's is
# registered. With mmdet present, a failing import stays loud.
if find_spec('mmdet') is not None:
    from .dense_heads import FixedSSDHead  # noqa: E402
    __all__ += ['FixedSSDHead']
