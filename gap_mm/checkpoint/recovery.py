# Copyright (c) gap_mm contributors. All rights reserved.
"""Find the checkpoint a run can really start from, before the Runner does.

MMEngine's auto-resume reads ``work_dir/last_checkpoint`` and hands the
path it names to ``torch.load``: a truncated newest checkpoint ends in a raw
``EOFError`` or a miniz ``RuntimeError``, an empty ``last_checkpoint`` in
``FileNotFoundError:  can not be found.``, a dangling one in
``FileNotFoundError``. The tools call :func:`prepare_checkpoint_loading`
instead, which

- for auto-resume (``--resume`` without a path), takes the file that
  ``last_checkpoint`` names if it is complete, and otherwise the newest
  complete ``*.pth`` in the work folder, with a warning naming every file it
  skipped and why;
- for an explicit ``--resume PATH``, ``load_from`` or the checkpoint of
  ``tools/test.py``, raises :class:`CheckpointReadError` (one line, naming
  the file and what is wrong) when the file is missing, empty, truncated or
  no ``torch.save`` archive.

The test is structural and reads no pickle: ``torch.save`` writes a zip
archive whose central directory comes last, so a write cut short has none;
the members' CRC-32s are checked too.
"""
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional, Tuple

from mmengine.logging import print_log

from .loading import CheckpointReadError

# ``iter_40.pth`` / ``epoch_3.pth`` and any other ``<name>_<step>.pth``
_STEP_RE = re.compile(r'_(\d+)\.pth$')
_ZIP_MAGIC = b'PK'
# the first byte of a pickle (protocol >= 2): torch < 1.6's legacy format
_PICKLE_PROTO = b'\x80'


def checkpoint_problem(path: str, verify_crc: bool = True) -> Optional[str]:
    """What keeps ``path`` from being a complete checkpoint, or None.

    Remote paths (``scheme://...``) and folders (DeepSpeed checkpoints) are
    not inspected and give None, as does a legacy (torch < 1.6, non-zip)
    pickle file, which only its loader can judge.

    Args:
        path (str): A local checkpoint path.
        verify_crc (bool): Also read every member and check its CRC-32
            (reads the whole file once). Defaults to True.

    Returns:
        str or None: A phrase that completes ``f'{path} {problem}'``, e.g.
        ``'is empty (0 bytes)'``; None if the file looks complete.
    """
    path = os.fspath(path)
    if '://' in path:
        return None
    if not osp.exists(path):
        return 'does not exist'
    if osp.isdir(path):
        return None
    size = osp.getsize(path)
    if size == 0:
        return 'is empty (0 bytes)'
    with open(path, 'rb') as f:
        head = f.read(4)
    if not zipfile.is_zipfile(path):
        if head.startswith(_ZIP_MAGIC):
            return (f'is truncated: a zip archive of {size} bytes without '
                    f'the central directory that torch.save writes last')
        if head.startswith(_PICKLE_PROTO):
            return None  # torch < 1.6 format; the loader judges it
        return (f'is not a PyTorch checkpoint: {size} bytes starting with '
                f'{head!r}, not a torch.save zip archive')
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if not any(m.filename.endswith('data.pkl') for m in members):
                return ('is a zip archive without data.pkl, not a '
                        'torch.save checkpoint')
            for member in members:
                end = member.header_offset + member.compress_size
                if end > size:
                    return (f'is truncated: member {member.filename} ends '
                            f'at byte {end} of a {size}-byte file')
                # torch.serialization.set_crc32_options(False) stores 0
                if verify_crc and member.CRC != 0:
                    with archive.open(member) as stream:
                        while stream.read(1 << 24):
                            pass
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return f'is damaged: {err}'
    return None


def check_checkpoint_file(path: str, what: str = 'checkpoint') -> None:
    """Raise one clear error if the local checkpoint ``path`` is unusable.

    Args:
        path (str): The checkpoint path (remote paths pass unchecked).
        what (str): How the user gave it (``'--resume'``, ``'load_from'``,
            ``'checkpoint'``), named in the message.

    Raises:
        CheckpointReadError: ``'<what> <path> is truncated: ...'`` and the
            like.
    """
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointReadError(
            f'{what} {path} {problem}; give a complete checkpoint '
            f'(a file torch.save wrote to the end)')


def _warn(message: str) -> None:
    """Log ``message`` as a warning once per job (rank 0 or no launcher)."""
    if os.environ.get('RANK', '0') == '0':
        print_log(message, logger='current', level=30)


def _candidates(folders: List[str]) -> List[str]:
    """The ``*.pth`` files in ``folders``, newest step first.

    ``best_*.pth`` (saved without optimizer state) and hidden files (the
    temporary files of atomic writes) are left out. The step is the number
    before ``.pth`` (``iter_40.pth`` -> 40); ties and files without one go
    by modification time.
    """
    found = {}
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            path = osp.join(folder, name)
            if (not name.endswith('.pth') or name.startswith(('.', 'best_'))
                    or not osp.isfile(path)):
                continue
            match = _STEP_RE.search(name)
            step = int(match.group(1)) if match else -1
            found[osp.realpath(path)] = (step, osp.getmtime(path), path)

    def key(item: Tuple[int, float, str]) -> Tuple[int, float]:
        return item[0], item[1]

    return [item[2] for item in sorted(found.values(), key=key, reverse=True)]


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint auto-resume should read from ``work_dir``.

    The file named in ``work_dir/last_checkpoint`` if it is complete (what
    MMEngine would pick); otherwise the newest complete ``*.pth`` in
    ``work_dir`` (and in the folder ``last_checkpoint`` points into), with
    a warning naming each file that was skipped and why.

    Args:
        work_dir (str): The run's work folder.

    Returns:
        str or None: The checkpoint, or None when ``work_dir`` holds
        neither ``last_checkpoint`` nor any checkpoint (a fresh run, as in
        MMEngine).

    Raises:
        CheckpointReadError: If there are checkpoints (or a
            ``last_checkpoint``) but none of them is complete; training
            from scratch would then overwrite them.
    """
    last_file = osp.join(work_dir, 'last_checkpoint')
    folders = [work_dir]
    named = None
    skipped = []
    if osp.isfile(last_file):
        with open(last_file) as f:
            named = f.read().strip()
        if not named:
            skipped.append(f'{last_file} is empty')
        else:
            problem = checkpoint_problem(named)
            if problem is None:
                return named
            skipped.append(f'{named} (named in {last_file}) {problem}')
            if osp.isdir(osp.dirname(named)):
                folders.append(osp.dirname(named))
    for path in _candidates(folders):
        if named is not None and osp.exists(named) and osp.samefile(
                path, named):
            continue  # already judged above
        problem = checkpoint_problem(path)
        if problem is None:
            if skipped:
                _warn('Auto-resume skips ' + '; '.join(skipped) +
                      f'. Resuming from {path}, the newest complete '
                      'checkpoint.')
            return path
        skipped.append(f'{path} {problem}')
    if not skipped:
        return None
    raise CheckpointReadError(
        f'--resume found no complete checkpoint in {work_dir}: ' +
        '; '.join(skipped) + '. Resume from a complete file with --resume '
        'PATH, or start afresh in another --work-dir')


def prepare_checkpoint_loading(cfg, resume: Optional[str]) -> None:
    """Set ``cfg.resume`` and ``cfg.load_from`` for ``tools/train.py``,
    with every local checkpoint checked before the Runner reads it.

    Args:
        cfg (Config): The config, modified in place.
        resume (str, optional): The ``--resume`` argument: None (not given;
            ``cfg.resume`` and ``cfg.load_from`` of the config stay),
            ``'auto'`` (the newest complete checkpoint of ``cfg.work_dir``,
            see :func:`find_resumable_checkpoint`) or a path.

    Raises:
        CheckpointReadError: An unusable explicit checkpoint, or auto-resume
            with only unusable ones.
    """
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        cfg.resume = True
        cfg.load_from = resume
    if cfg.get('resume', False) and not cfg.get('load_from'):
        # auto-resume, from --resume or from resume=True in the config
        cfg.load_from = find_resumable_checkpoint(cfg.work_dir)
        return
    if cfg.get('load_from'):
        check_checkpoint_file(
            cfg.load_from, '--resume' if cfg.get('resume') else 'load_from')


def restores_method_state(runner) -> bool:
    """Whether the checkpoint a Runner loads is a resume (``--resume``,
    ``resume=True``) rather than weights to start from (``load_from``).

    Only a resume should restore a method's saved state (masks, schedule
    position, partitions); after ``load_from`` the weights are loaded and
    the method starts afresh. A hook's ``after_load_checkpoint`` asks this
    before it reads its state from the checkpoint.

    Args:
        runner (Runner): The MMEngine Runner.

    Returns:
        bool: True when the Runner resumes.
    """
    return bool(getattr(runner, '_resume', False))
