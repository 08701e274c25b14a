# Copyright (c) gap_mm contributors. All rights reserved.
"""File writes that a kill cannot leave half done."""
from .atomic_local_backend import (AtomicLocalBackend, atomic_write_bytes,
                                   atomic_write_text,
                                   register_atomic_local_backend,
                                   remove_stale_temp_files)

__all__ = [
    'AtomicLocalBackend', 'atomic_write_bytes', 'atomic_write_text',
    'register_atomic_local_backend', 'remove_stale_temp_files'
]
