# Copyright (c) gap_mm contributors. All rights reserved.
"""A CheckpointHook that never deletes the last good checkpoint.

MMEngine 0.10.7's :class:`~mmengine.hooks.CheckpointHook` deletes the
oldest checkpoint *before* it writes the new one, writes the new one in
place, and rewrites ``last_checkpoint`` in place. With ``max_keep_ckpts=1``
a kill while ``iter_40.pth`` is written leaves a partial ``iter_40.pth``,
no ``iter_20.pth`` and a ``last_checkpoint`` naming the deleted file: the
run is lost. :class:`AtomicCheckpointHook` keeps every option and file name
of MMEngine's hook and changes only the order and the way of writing:

1. the new checkpoint is written under a temporary name, fsynced and
   renamed into place (:class:`gap_mm.fileio.AtomicLocalBackend`, which
   ``Runner.save_checkpoint`` writes through);
2. ``last_checkpoint`` is then replaced the same way, so it names the new,
   complete file;
3. only then are checkpoints beyond ``max_keep_ckpts`` (and a superseded
   best checkpoint) deleted.

A kill at any point leaves a complete checkpoint that ``last_checkpoint``
names (the old one until step 2, the new one after it).

``import gap_mm`` registers it in MMEngine's root ``HOOKS`` registry under
the name ``'CheckpointHook'`` (:func:`register_atomic_checkpoint_hook`), so
every config's ``default_hooks.checkpoint = dict(type='CheckpointHook',
...)`` builds it, in every ``default_scope``.
"""
import os.path as osp
from typing import Any, Dict, List, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from gap_mm.checkpoint.loading import plain_load_note
from gap_mm.fileio import atomic_write_text, remove_stale_temp_files


class _DeferredRemoval:
    """A file backend whose ``remove`` and ``rmtree`` only note the path;
    :meth:`flush` deletes them later. Every other attribute is the wrapped
    backend's."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.pending: List[str] = []

    def remove(self, filepath: str) -> None:
        """Note ``filepath`` for deletion."""
        self.pending.append(filepath)

    def rmtree(self, dir_path: str) -> None:
        """Note ``dir_path`` (a DeepSpeed checkpoint folder) for deletion."""
        self.pending.append(dir_path)

    def flush(self, keep: set) -> List[str]:
        """Delete the noted paths, except those in ``keep``.

        Returns:
            list[str]: The paths deleted.
        """
        removed = []
        for path in self.pending:
            if path in keep:
                continue
            if self._backend.isfile(path):
                self._backend.remove(path)
            elif self._backend.isdir(path):
                self._backend.rmtree(path)
            else:
                continue
            removed.append(path)
        self.pending = []
        return removed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


class AtomicCheckpointHook(CheckpointHook):
    """MMEngine's CheckpointHook, saving before deleting and writing
    ``last_checkpoint`` atomically.

    It takes exactly :class:`~mmengine.hooks.CheckpointHook`'s arguments
    and keeps its file names, ``keep_ckpt_ids`` bookkeeping and resume
    behaviour. What differs:

    - a checkpoint beyond ``max_keep_ckpts`` is deleted after the new
      checkpoint and ``last_checkpoint`` are complete, not before;
    - ``last_checkpoint`` is written to a temporary file and renamed over
      the old one (:func:`gap_mm.fileio.atomic_write_text`);
    - a superseded ``best_*.pth`` is deleted after the new best is saved;
    - ``before_train`` deletes temporary files that a killed writer left in
      the checkpoint folder;
    - ``after_train`` logs, unless ``published_keys`` is set, the command
      that writes from the last checkpoint the file plain mmdet / mmdet3d
      load without gap_mm (the training state in a checkpoint needs
      gap_mm's allow-list).

    The checkpoint file itself is written atomically by the file backend
    (:class:`gap_mm.fileio.AtomicLocalBackend` for local paths).

    Note:
        Between the save and the deletion, ``max_keep_ckpts + 1``
        checkpoints exist on disk: plan the disk for one more.
    """

    def before_train(self, runner) -> None:
        """Set up as MMEngine does, then delete stale temporary files that
        a killed write left in the checkpoint and work folders."""
        super().before_train(runner)
        if is_main_process():
            for folder in {str(self.out_dir), runner.work_dir}:
                if '://' in folder:
                    continue
                for path in remove_stale_temp_files(folder):
                    runner.logger.info(
                        f'Removed {path}, the partial write of a killed '
                        'run')

    def after_train(self, runner) -> None:
        """Publish as MMEngine does (``published_keys``); without it, say
        for the last checkpoint, which holds the training state, how to
        write the file that plain mmdet / mmdet3d load
        (:func:`gap_mm.checkpoint.plain_load_note`)."""
        super().after_train(runner)
        if (is_main_process() and self.published_keys is None
                and self.last_ckpt is not None):
            note = plain_load_note(str(self.last_ckpt))
            if note:
                runner.logger.info(note)

    def _save_checkpoint_with_step(self, runner, step: int,
                                   meta: Dict[str, Any]) -> None:
        """Save the checkpoint of ``step``, point ``last_checkpoint`` at it,
        and only then delete the checkpoint that ``max_keep_ckpts`` drops.
        """
        outdated: Optional[int] = None
        if self.max_keep_ckpts > 0:
            # _save_checkpoint and _save_best_checkpoint may both get here
            # in one epoch; the step is then counted once, as in MMEngine
            if not (len(self.keep_ckpt_ids) > 0
                    and self.keep_ckpt_ids[-1] == step):
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    outdated = self.keep_ckpt_ids.popleft()
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info('keep_ckpt_ids',
                                               list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)

        # Model parallel-like training pulls sharded states from all ranks
        # into the save; the bookkeeping below is the main process's.
        if not is_main_process():
            return

        atomic_write_text(
            str(self.last_ckpt), osp.join(runner.work_dir, 'last_checkpoint'))

        if outdated is not None and outdated != step:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                # checkpoints saved by DeepSpeed are folders
                self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics: Dict[str, Any]) -> None:
        """Save a new best checkpoint as MMEngine does, but delete the
        previous best only after the new one is written."""
        backend = self.file_backend
        deferred = _DeferredRemoval(backend)
        self.file_backend = deferred
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.file_backend = backend
        keep = {getattr(self, 'best_ckpt_path', None)}
        best_paths = getattr(self, 'best_ckpt_path_dict', None) or {}
        keep.update(best_paths.values())
        deferred.flush(keep)


def register_atomic_checkpoint_hook() -> None:
    """Register :class:`AtomicCheckpointHook` in MMEngine's root ``HOOKS``
    as ``'CheckpointHook'``, replacing MMEngine's class under that name.

    ``Runner`` builds ``default_hooks.checkpoint`` from the registry, and
    mmdet's and mmdet3d's ``HOOKS`` registries fall back to MMEngine's for
    the name, so every string-typed config gets the atomic hook. A config
    that names the class object ``mmengine.hooks.CheckpointHook`` itself
    (a lazy-import config) still gets MMEngine's; its checkpoint file is
    written atomically all the same (the file backend), but deletion comes
    first there.
    """
    HOOKS.register_module(
        name='CheckpointHook', module=AtomicCheckpointHook, force=True)
    HOOKS.register_module(module=AtomicCheckpointHook, force=True)
