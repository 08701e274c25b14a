# Copyright (c) gap_mm contributors. All rights reserved.
"""The one exception type for bad GaP settings.

Every check of a user's GaP settings (sparsity, pattern, partitions, regexes,
schedule, hook options) raises :class:`GaPConfigError`. It subclasses
:class:`ValueError`, so callers that catch ``ValueError`` keep working, and
the tools catch it to print the message without a traceback.
"""


class GaPConfigError(ValueError):
    """A GaP setting is invalid; the message names the value and what would
    be valid."""
