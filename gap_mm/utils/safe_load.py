# Copyright (c) gap_mm authors. All rights reserved.
"""Allow-list what MMEngine checkpoints need under ``weights_only`` loading.

Since torch 2.6, :func:`torch.load` defaults to ``weights_only=True``. MMEngine
0.10.7 calls ``torch.load`` without that argument, so resuming (and even
loading a checkpoint with ``load_from``) fails on the non-tensor objects that
MMEngine itself puts into every checkpoint. We allow-list exactly those
objects with :func:`torch.serialization.add_safe_globals` instead of turning
``weights_only`` off, which would run arbitrary code from a checkpoint.

The list was found empirically (``torch.serialization.
get_unsafe_globals_in_checkpoint``) on checkpoints written by an MMEngine
0.10.7 ``Runner`` with the default hooks, a validation loop whose metric
returns numpy scalars, param schedulers, and a dataset whose ``metainfo``
holds a numpy array. Plain ``dict``/``list``/``tuple``/``OrderedDict``,
python scalars, strings and tensors are allowed by torch already.
"""
import _compat_pickle
import os
import pickle
import pickletools
import zipfile
from typing import Any, Callable, Iterable, List, Set, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.utils import digit_version

_SafeGlobal = Union[Callable, Tuple[Callable, str]]

_DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')
_NUMERIC_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8',
                   'uint16', 'uint32', 'uint64', 'float16', 'float32',
                   'float64')


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """A ``getattr`` restricted to the statistics methods of HistoryBuffer.

    ``HistoryBuffer.__getstate__`` stores ``_statistics_methods``: plain
    functions such as ``HistoryBuffer.mean``. Pickle protocol 2 (the one
    ``torch.save`` uses) writes a function nested in a class as
    ``builtins.getattr(HistoryBuffer, 'mean')``. Allowing the real
    ``builtins.getattr`` would let a checkpoint reach any attribute of any
    allowed object (for example ``__self__`` of a builtin function, which is
    the ``builtins`` module), so this function is registered under the name
    ``builtins.getattr`` and resolves nothing but those statistics methods.

    Args:
        obj (Any): The object whose attribute is requested. Must be
            :class:`HistoryBuffer` itself.
        name (str): The attribute name. Must be one of ``'min'``, ``'max'``,
            ``'current'``, ``'mean'`` or a statistics method defined on a
            :class:`HistoryBuffer` and registered with
            ``HistoryBuffer.register_statistics``.

    Returns:
        Callable: The requested statistics method.
    """
    if obj is HistoryBuffer and isinstance(name, str):
        method = getattr(HistoryBuffer, name, None)
        registered = HistoryBuffer._statistics_methods.values()
        if method is not None and (name in _DEFAULT_STATISTICS
                                   or method in registered):
            return method
    raise pickle.UnpicklingError(
        'weights_only load: getattr is only allowed for HistoryBuffer '
        f'statistics methods, but got getattr({obj!r}, {name!r})')


def _numpy_multiarray() -> Any:
    """Return numpy's ``multiarray`` module without deprecation warnings."""
    if digit_version(np.__version__) >= digit_version('2.0.0'):
        from numpy._core import multiarray  # type: ignore
    else:
        from numpy.core import multiarray  # type: ignore
    return multiarray


def mmengine_checkpoint_safe_globals() -> List[_SafeGlobal]:
    """List the globals that MMEngine 0.10.7 checkpoints need.

    Returns:
        list: Items for :func:`torch.serialization.add_safe_globals`: either
        callables or ``(callable, 'module.qualname')`` pairs.
    """
    multiarray = _numpy_multiarray()
    safe: List[_SafeGlobal] = [
        # checkpoint['message_hub']['log_scalars'] maps every logged scalar
        # ('train/loss', 'train/lr', 'val/<metric>', ...) to a HistoryBuffer.
        HistoryBuffer,
        # HistoryBuffer's pickled state holds its statistics methods
        # (HistoryBuffer.min/max/current/mean), pickled as
        # builtins.getattr(HistoryBuffer, name); see the restricted version.
        (_history_buffer_getattr, 'builtins.getattr'),
        # HistoryBuffer keeps its history in numpy arrays, and a dataset's
        # ``metainfo`` (checkpoint['meta']['dataset_meta']) may hold arrays.
        # An array is pickled as _reconstruct(ndarray, shape, dtype) + state.
        np.ndarray,
        # The dtype of every pickled array or numpy scalar is pickled as
        # numpy.dtype(code, ...) ...
        np.dtype,
    ]
    # ... and then its state is set (pickle BUILD) on the concrete dtype
    # class, e.g. numpy.dtypes.Float64DType for HistoryBuffer's history or
    # Int64DType for an integer array in ``metainfo``. Only plain numeric and
    # bool dtypes are allowed: no object, string, void or datetime dtypes.
    safe += [type(np.dtype(code)) for code in _NUMERIC_DTYPES]
    # numpy 1.x and 2.x spell the module differently; a checkpoint written
    # under either must load under the installed one, so register both names.
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        safe += [
            # Rebuilds a pickled numpy array (see np.ndarray above).
            (multiarray._reconstruct, f'{module}._reconstruct'),
            # Rebuilds numpy scalars, e.g. a metric value of type np.float64
            # that ends up in message_hub's runtime_info or log_scalars.
            (multiarray.scalar, f'{module}.scalar'),
        ]
    return safe


def allow_mmengine_checkpoint_globals() -> None:
    """Allow-list MMEngine checkpoint contents for ``weights_only`` loading.

    After this call, ``torch.load(path)`` with the default
    ``weights_only=True`` loads checkpoints written by MMEngine 0.10.7's
    ``Runner`` (model, optimizer, param schedulers, message hub and meta), so
    ``resume`` and ``load_from`` work under torch >= 2.6. It never turns
    ``weights_only`` off. It only adds to torch's allow-list, so calling it
    again is harmless.

    Note:
        A custom statistics method registered with
        ``HistoryBuffer.register_statistics`` is pickled by its own qualified
        name; allow-list that function separately if a checkpoint holds it.
    """
    if hasattr(torch.serialization, 'add_safe_globals'):  # torch >= 2.4
        torch.serialization.add_safe_globals(
            mmengine_checkpoint_safe_globals())


def safe_global_names(items: Iterable[_SafeGlobal]) -> Set[str]:
    """The dotted names (``'module.qualname'``, as a pickle names them) of
    allow-list entries: objects, or ``(object, name)`` pairs as
    ``torch.serialization.add_safe_globals`` takes them."""
    return {
        item[1] if isinstance(item, tuple) else
        f'{item.__module__}.{item.__qualname__}'
        for item in items
    }


def allowed_global_names() -> Set[str]:
    """The dotted names of what :func:`allow_mmengine_checkpoint_globals`
    allow-lists."""
    return safe_global_names(mmengine_checkpoint_safe_globals())


def pickled_globals(path: Union[str, os.PathLike]) -> List[str]:
    """The globals (``'module.name'``) a ``torch.save`` archive's pickle
    names, read from its opcodes without unpickling anything.

    ``torch.save`` pickles with protocol 2, whose ``GLOBAL`` opcode carries
    the module and the name; that is what is read here.

    Args:
        path (str): A local ``torch.save`` file (a zip archive).

    Returns:
        list[str]: Each global once, in order of appearance; empty for a
        file that is no zip archive with a ``data.pkl``.
    """
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        return []
    with zipfile.ZipFile(path) as archive:
        member = next((n for n in archive.namelist()
                       if n.endswith('/data.pkl') or n == 'data.pkl'), None)
        if member is None:
            return []
        data = archive.read(member)
    found: List[str] = []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name == 'GLOBAL':
            module, name = str(arg).split(' ', 1)
            # protocol 2 writes Python 2's names (__builtin__, copy_reg);
            # unpickling maps them back, and so does this
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            if f'{module}.{name}' not in found:
                found.append(f'{module}.{name}')
    return found


def globals_refused_without_gap_mm(path: Union[str, os.PathLike]) -> List[str]:
    """What a plain ``torch.load(path)`` (``weights_only=True``, torch's
    default since 2.6) refuses where gap_mm is not imported: the globals of
    the file that torch does not allow by itself, i.e. those that gap_mm's
    allow-list or another package's admits.

    A training checkpoint of MMEngine holds its message hub
    (``HistoryBuffer``) and numpy values; a file written by
    ``tools/model_converters/publish_model.py`` holds none.

    Args:
        path (str): A local ``torch.save`` file.

    Returns:
        list[str]: The refused globals; empty if plain torch loads the
        file, or if it cannot be read (the loader then says why).
    """
    try:
        names = pickled_globals(path)
        if not names or not hasattr(torch.serialization,
                                    'get_unsafe_globals_in_checkpoint'):
            return []
        # torch counts what was allow-listed in this process as safe;
        # gap_mm's own allow-list is not there in a plain process
        unsafe = set(
            torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except (OSError, ValueError, zipfile.BadZipFile, RuntimeError):
        return []
    ours = allowed_global_names()
    return [n for n in names if n in unsafe or n in ours]
