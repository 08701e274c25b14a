# Copyright (c) gap_mm contributors. All rights reserved.
"""Workers that die with their launcher.

torchrun (``torch.distributed.run``, which ``tools/dist_train.sh`` execs)
starts every worker with ``start_new_session=True``
(``torch/distributed/elastic/multiprocessing/subprocess_handler``), so the
workers are in sessions and process groups of their own. torchrun stops
them when it gets SIGTERM, SIGINT (Ctrl-C), SIGHUP or SIGQUIT, but a
SIGKILL of the launcher (``kill -9 -<pgid>``, the OOM killer, a scheduler's
hard kill) reaches only torchrun itself: the workers were re-parented and
went on training and writing checkpoints.

:func:`die_with_launcher` closes that hole on Linux: each worker asks the
kernel for a signal when its parent (the torchrun agent) dies
(``prctl(PR_SET_PDEATHSIG)``), and, since the agent may have died before
the request, checks once that its launcher is still there.
"""
import ctypes
import ctypes.util
import os
import signal
import sys
from typing import Optional

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
# exported by tools/dist_train.sh and tools/dist_test.sh: the pid of the
# shell, which ``exec`` turns into the torchrun agent
LAUNCHER_PID_ENV = 'GAP_MM_LAUNCHER_PID'


def _under_torchrun() -> bool:
    """Whether this process is a worker of torchrun's elastic agent."""
    return ('TORCHELASTIC_RUN_ID' in os.environ
            or LAUNCHER_PID_ENV in os.environ)


def _launcher_pid() -> Optional[int]:
    """The launcher's pid from ``GAP_MM_LAUNCHER_PID``, or None."""
    value = os.environ.get(LAUNCHER_PID_ENV, '')
    return int(value) if value.isdigit() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_launcher(sig: int = signal.SIGTERM) -> bool:
    """Get ``sig`` when the parent process (the torchrun agent) dies.

    Does nothing outside Linux or outside a torchrun worker (no
    ``TORCHELASTIC_RUN_ID`` and no ``GAP_MM_LAUNCHER_PID`` in the
    environment). SIGTERM's default action ends the worker at once; with
    the atomic checkpoint writes of :mod:`gap_mm.fileio` a worker killed
    mid-save leaves the previous checkpoint intact.

    If ``GAP_MM_LAUNCHER_PID`` is set and that process is gone although it
    is (or was) the parent, the launcher died before the kernel was asked,
    and the worker exits with status 1 and a message saying so.

    Args:
        sig (int): The signal the kernel sends. Defaults to SIGTERM.

    Returns:
        bool: True if the parent-death signal was set.
    """
    if not sys.platform.startswith('linux') or not _under_torchrun():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
        result = libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return False
    if result != 0:
        return False
    launcher = _launcher_pid()
    if (launcher is not None and os.getppid() != launcher
            and not _pid_alive(launcher)):
        # re-parented before prctl: the signal will never come
        sys.stderr.write(
            f'rank {os.environ.get("RANK", "?")} (pid {os.getpid()}): the '
            f'launcher (pid {launcher}) is gone; stopping.\n')
        sys.exit(1)
    return True
