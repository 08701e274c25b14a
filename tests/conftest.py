# Copyright (c) gap_mm contributors. All rights reserved.
"""Test isolation for MMEngine's process-wide state."""
import pytest
from mmengine.registry import DefaultScope


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Undo the default scope a test leaves behind.

    Every ``Runner`` (and ``init_default_scope``) creates a ``DefaultScope``
    that stays the current one after the test: a later test's
    ``mmdet3d.registry.DATASETS.build`` would then look in the scope of that
    Runner (``'mmengine'``, ``'mmdet'``) and fail, depending on test order.
    mmengine's ``RunnerTestCase.tearDown`` clears it the same way.
    """
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


_MEASUREMENTS = []


@pytest.fixture
def report_measurement(request):
    """``report_measurement(text)``: a figure a test measured, listed in the
    summary at the end of the run (pytest's capture hides ``print``)."""

    def report(text: str) -> None:
        _MEASUREMENTS.append(f'{request.node.nodeid}: {text}')

    return report


def pytest_terminal_summary(terminalreporter):
    if _MEASUREMENTS:
        terminalreporter.section('measured by the tests')
        for line in _MEASUREMENTS:
            terminalreporter.write_line(line)
