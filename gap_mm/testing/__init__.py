# Copyright (c) gap_mm contributors. All rights reserved.
"""Helpers for testing GaP: a toy model and dataset (not registered on
import; register them in your test's ``setUp``)."""
from .toy import GaPToyDataset, GaPToyModel

__all__ = ['GaPToyDataset', 'GaPToyModel']
