# Copyright (c) gap_mm contributors. All rights reserved.
"""Compressed export of sparse state dicts (safetensors, zeros not stored)."""
from .sparse_format import (FORMAT_NAME, FORMAT_VERSION, SparseFormatError,
                            dense_state_dict_bytes, load_sparse_state_dict,
                            read_sparse_info, save_sparse_state_dict)

__all__ = [
    'SparseFormatError', 'save_sparse_state_dict', 'load_sparse_state_dict',
    'read_sparse_info', 'dense_state_dict_bytes', 'FORMAT_NAME',
    'FORMAT_VERSION'
]
