# Copyright (c) gap_mm contributors. All rights reserved.
"""Local files that are either complete or absent, never partial.

MMEngine's :class:`~mmengine.fileio.LocalBackend` writes in place
(``open(path, 'wb').write(data)``): a process killed during the write
leaves a truncated file under the final name, and a checkpoint truncated
that way ends ``--resume`` in an ``EOFError``. :class:`AtomicLocalBackend`
writes to a temporary file in the same folder, flushes and fsyncs it, and
renames it over the final name with :func:`os.replace` (atomic on POSIX
within one file system), then fsyncs the folder so the rename itself is
durable. A reader sees the old file or the new one, whole.

``import gap_mm`` registers it as MMEngine's ``'local'`` backend (for paths
without a ``scheme://`` prefix), so ``Runner.save_checkpoint`` and every
other ``mmengine.fileio.put`` of a local path go through it.
"""
import os
import os.path as osp
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, List, Union

from mmengine.fileio import LocalBackend, register_backend

# ``.iter_40.pth.tmp-<pid>-<random>``: hidden, and named after the file and
# the writing process, so a stale one can be told from a live one.
TEMP_PREFIX = '.'
TEMP_MARK = '.tmp-'
_TEMP_RE = re.compile(r'^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[^.]+$')


def _fsync_dir(dirname: str) -> None:
    """fsync a folder so that a rename inside it survives a crash.

    Some file systems (and all of Windows) cannot open a folder; the rename
    is then as durable as they make it.
    """
    try:
        fd = os.open(dirname or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_and_sync(f: BinaryIO, data: Union[bytes, bytearray, memoryview],
                    tmp_path: str) -> None:
    """Write ``data`` to the open file ``f`` (the temporary file
    ``tmp_path``), flush it and fsync it.

    The tests replace this function to kill a process in mid-write.
    """
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def atomic_write_bytes(data: Union[bytes, bytearray, memoryview],
                       filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` so that the file is whole or absent.

    The bytes go to ``.<name>.tmp-<pid>-<random>`` in the same folder, are
    flushed and fsynced, and the temporary file is renamed over
    ``filepath`` (:func:`os.replace`); the folder is fsynced afterwards. If
    anything raises before the rename, the temporary file is removed and
    the old ``filepath`` (if any) is untouched. A process killed before the
    rename leaves the old file and a temporary file, which
    :func:`remove_stale_temp_files` deletes later.

    Args:
        data (bytes): What to write.
        filepath (str or Path): The final path. Its folder is created.
    """
    filepath = os.fspath(filepath)
    dirname = osp.dirname(osp.abspath(filepath))
    os.makedirs(dirname, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(
        dir=dirname,
        prefix=f'{TEMP_PREFIX}{osp.basename(filepath)}{TEMP_MARK}'
        f'{os.getpid()}-')
    try:
        with os.fdopen(fd, 'wb') as f:
            _write_and_sync(f, data, tmp_path)
        # mkstemp creates 0600; give the file the mode open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, filepath)
    except BaseException:
        # KeyboardInterrupt included: never leave a partial temporary file
        try:
            os.remove(tmp_path)
        except OSError:
            pass
        raise
    _fsync_dir(dirname)


def atomic_write_text(text: str,
                      filepath: Union[str, Path],
                      encoding: str = 'utf-8') -> None:
    """:func:`atomic_write_bytes` for text.

    Args:
        text (str): What to write.
        filepath (str or Path): The final path.
        encoding (str): Defaults to ``'utf-8'``.
    """
    atomic_write_bytes(text.encode(encoding), filepath)


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temp_files(dirname: Union[str, Path]) -> List[str]:
    """Delete the temporary files of :func:`atomic_write_bytes` in
    ``dirname`` whose writing process is gone (killed mid-write).

    Args:
        dirname (str or Path): The folder to clean. A missing folder is
            fine.

    Returns:
        list[str]: The paths removed.
    """
    dirname = os.fspath(dirname)
    removed = []
    try:
        names = os.listdir(dirname)
    except OSError:
        return removed
    for name in names:
        match = _TEMP_RE.match(name)
        if match is None or _pid_alive(int(match.group('pid'))):
            continue
        path = osp.join(dirname, name)
        try:
            os.remove(path)
        except OSError:
            continue
        removed.append(path)
    return removed


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local backend whose writes are atomic.

    ``put`` and ``put_text`` go through :func:`atomic_write_bytes`: the file
    under the final name is the old one or the complete new one, never a
    prefix of the new one. Everything else is
    :class:`~mmengine.fileio.LocalBackend`'s.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Write bytes to ``filepath`` atomically (folders are created).

        Args:
            obj (bytes): Data to be written.
            filepath (str or Path): Path to write data.
        """
        atomic_write_bytes(obj, filepath)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        """Write text to ``filepath`` atomically (folders are created).

        Args:
            obj (str): Text to be written.
            filepath (str or Path): Path to write text.
            encoding (str): Defaults to ``'utf-8'``.
        """
        atomic_write_text(obj, filepath, encoding=encoding)


def register_atomic_local_backend() -> None:
    """Make :class:`AtomicLocalBackend` MMEngine's ``'local'`` backend, the
    one ``get_file_backend`` returns for a path without a scheme.

    Backends that callers built before this call (and cached with
    ``enable_singleton=True``) keep their class; ``import gap_mm`` calls it
    before any Runner exists.
    """
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
