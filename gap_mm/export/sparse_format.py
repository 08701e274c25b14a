# Copyright (c) gap_mm contributors. All rights reserved.
"""Sparse state dicts in safetensors files, without their zeros.

A GaP-trained model is stored by MMEngine as a dense ``state_dict`` in which
the pruned weights are zeros. :func:`save_sparse_state_dict` writes the same
``state_dict`` into a `safetensors`_ file without storing the zeros, and
:func:`load_sparse_state_dict` reads it back bit for bit. safetensors holds
no pickle: a reader parses one JSON header and copies raw bytes, so a file
from an untrusted source cannot run code.

Each entry ``name`` of the state dict becomes one to three safetensors
tensors, by the encoding that takes the fewest bytes:

* ``dense``: ``name``, the tensor itself (same shape and dtype).
* ``sparse``: ``name#mask``, uint8, the bit-packed mask of the elements
  whose **bit pattern** is not 0 (so ``-0.0`` counts as a value), and
  ``name#values``, 1-D, those elements in row-major order.
* ``sparse_zero_sign`` (float16/bfloat16/float32/float64): ``name#mask`` of
  the numerically non-zero elements (NaN included), ``name#zero_sign``,
  uint8, a bit-packed mask over the zeros, in order, set where the zero is
  ``-0.0``, and ``name#values``.

Masks are in :func:`numpy.packbits` order, as in
:mod:`gap_mm.sparsity.packing`: the first element is the most significant
bit of the first byte, the unused bits of the last byte are 0. Weights
pruned with ``w.mul_(mask)`` are ``-0.0`` wherever ``w`` was negative, about
half of the zeros; ``sparse_zero_sign`` keeps them exact at one bit per zero.
Integer and bool tensors are stored as they are. A dtype safetensors has no
name for (complex, the ``fnuz`` float8 types) is stored as its raw bytes
(1-D uint8). Values are copied as bit patterns, so without ``fp16`` a file
loads bit-identical to its input, signed zeros and NaN payloads included.

The safetensors metadata (``__metadata__``, str to str) holds::

    format            'gap_mm.sparse_state_dict'
    format_version    '2'
    manifest          JSON: {"neg_zeros_dropped": 0,
                             "meta": {...},             # given by the caller
                             "torch_metadata": {...},   # or null
                             "tensors": [               # state_dict order
                               {"name": "conv.weight", "dtype": "float32",
                                "shape": [8, 3, 3, 3],
                                "encoding": "sparse_zero_sign",
                                "stored_dtype": "float32", "nnz": 22,
                                "neg_zeros": 101, "blake2b": "<32 hex>"},
                               ...]}
    manifest_blake2b  BLAKE2b-128 (hex) of the manifest's UTF-8 bytes

``nnz`` counts the numerically non-zero elements (NaN included) and
``neg_zeros`` the ``-0.0``; a tensor's ``blake2b`` covers the bytes of its
safetensors tensors in the order listed above. safetensors checks its header
(JSON, dtypes, shapes, byte ranges, file length); gap_mm checks the format,
version and manifest digest, the tensor names, dtypes and shapes against the
manifest, and each tensor's digest and mask counts. So every bit of the file
is checked: the loader raises :class:`SparseFormatError` naming the file and
the problem (truncated, corrupted, not safetensors, not this format or
version) instead of returning a wrong model.

Two options trade exactness for size and make the file lossy;
:func:`load_sparse_state_dict` then warns:

* ``fp16=True`` stores the values of float32 and float64 tensors as float16
  (``stored_dtype``) and the loader casts them back. A tensor whose finite
  values do not fit into float16 (``|x| > 65504``, or a non-zero value
  that float16 rounds to 0, ``|x| <= 2**-25``) keeps its dtype and stays
  exact. Zero positions stay exact, and non-zero ones stay non-zero.
* ``keep_zero_sign=False`` writes ``-0.0`` as ``+0.0``. The two compare
  equal, so a network computes the same numbers; only the bits differ.

.. _safetensors: https://github.com/huggingface/safetensors
"""
import hashlib
import json
import math
import os
import sys
import warnings
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple, Union

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

__all__ = [
    'SparseFormatError', 'save_sparse_state_dict', 'load_sparse_state_dict',
    'read_sparse_info', 'dense_state_dict_bytes', 'FORMAT_NAME',
    'FORMAT_VERSION'
]

PathType = Union[str, 'os.PathLike[str]']

FORMAT_NAME = 'gap_mm.sparse_state_dict'
#: Version 1 was gap_mm's own container; version 2 is safetensors.
FORMAT_VERSION = 2

_V1_MAGIC = b'\x89GAPSPR\n'
_ZIP_MAGIC = b'PK\x03\x04'
_LENGTH_NBYTES = 8  # safetensors: little-endian uint64 header length
_MAX_HEADER_NBYTES = 100_000_000  # the limit safetensors itself enforces
_DIGEST_NBYTES = 16
_FP16_MAX = 65504.0
# Rough header bytes of one safetensors tensor besides its name, used to
# compare encodings: ``"...":{"dtype":"F32","shape":[N],"data_offsets":..}``
_PART_OVERHEAD = 64

# Every dtype the format can hold, by the name written into the manifest.
# Names are resolved through this table only, never through getattr.
_DTYPES: Dict[str, torch.dtype] = OrderedDict()
for _name in ('float64', 'float32', 'float16', 'bfloat16', 'complex64',
              'complex128', 'int8', 'int16', 'int32', 'int64', 'uint8',
              'uint16', 'uint32', 'uint64', 'bool', 'float8_e4m3fn',
              'float8_e5m2', 'float8_e4m3fnuz', 'float8_e5m2fnuz'):
    if isinstance(getattr(torch, _name, None), torch.dtype):
        _DTYPES[_name] = getattr(torch, _name)
_DTYPE_NAMES: Dict[torch.dtype, str] = {v: k for k, v in _DTYPES.items()}

# Dtypes safetensors stores as themselves; the others are stored as raw
# bytes (uint8). Fixed here, not taken from the installed safetensors, so
# that the layout of a file never depends on its version.
_NATIVE = frozenset(_DTYPES[k]
                    for k in ('float64', 'float32', 'float16', 'bfloat16',
                              'int64', 'int32', 'int16', 'int8', 'uint8',
                              'bool', 'uint16', 'uint32', 'uint64',
                              'float8_e4m3fn', 'float8_e5m2') if k in _DTYPES)

# Integer dtypes used to look at an element's bit pattern, by item size.
_BIT_VIEWS: Dict[int, torch.dtype] = {
    1: torch.uint8,
    2: torch.int16,
    4: torch.int32,
    8: torch.int64
}

# Dtypes whose values ``fp16=True`` may store as float16.
_FP16_SOURCES = (torch.float32, torch.float64)

# Dtypes whose bit pattern with only the sign bit set is -0.0.
_SIGNED_ZERO = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_ENTRY_KEYS = ('name', 'dtype', 'shape', 'encoding', 'stored_dtype', 'nnz',
               'neg_zeros', 'blake2b')


class SparseFormatError(ValueError):
    """A sparse state-dict file is truncated, corrupted, not safetensors or
    not of this format or version; the message names the file and what is
    wrong."""


# --------------------------------------------------------------------------
# Shared by writer and reader
# --------------------------------------------------------------------------


class _ByteCounter:
    """A write-only file object that only counts the bytes written to it."""

    def __init__(self) -> None:
        self.nbytes = 0

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        self.nbytes += size
        return size

    def flush(self) -> None:
        pass


def dense_state_dict_bytes(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Size of ``torch.save(state_dict)``, the dense reference size.

    The bytes are counted as :func:`torch.save` writes them, without keeping
    them in memory; the count equals ``len`` of a :class:`io.BytesIO` that
    ``torch.save`` wrote to.

    Args:
        state_dict (Mapping[str, torch.Tensor]): The state dict.

    Returns:
        int: The number of bytes ``torch.save`` writes.
    """
    counter = _ByteCounter()
    torch.save(state_dict, counter)  # type: ignore[arg-type]
    return counter.nbytes


def _check_byteorder() -> None:
    # Masks and digests are taken over the tensors' bytes in memory, which
    # equal the file's bytes (safetensors is little-endian) only here.
    if sys.byteorder != 'little':
        raise RuntimeError('gap_mm sparse files are not supported on a '
                           f'{sys.byteorder}-endian host')


def _digest(parts: List[torch.Tensor]) -> str:
    """BLAKE2b-128 (hex) of the tensors' bytes, one after the other."""
    digest = hashlib.blake2b(digest_size=_DIGEST_NBYTES)
    for part in parts:
        digest.update(part.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _sparse_capable(dtype: torch.dtype) -> bool:
    return ((dtype.is_floating_point or dtype.is_complex)
            and dtype.itemsize in _BIT_VIEWS)


def _parts(entry: Mapping[str, Any]) -> List[Tuple[str, torch.dtype, list]]:
    """``(key, dtype, shape)`` of the safetensors tensors of a checked
    manifest entry, in digest order."""
    name, shape = entry['name'], list(entry['shape'])
    numel = math.prod(shape)
    stored = _DTYPES[entry['stored_dtype']]

    def elements(key: str, elem_shape: list) -> Tuple[str, torch.dtype, list]:
        if stored in _NATIVE:
            return key, stored, elem_shape
        return key, torch.uint8, [math.prod(elem_shape) * stored.itemsize]

    if entry['encoding'] == 'dense':
        return [elements(name, shape)]
    parts = [(f'{name}#mask', torch.uint8, [(numel + 7) // 8])]
    count = entry['nnz'] + entry['neg_zeros']
    if entry['encoding'] == 'sparse_zero_sign':
        parts.append((f'{name}#zero_sign', torch.uint8,
                      [(numel - entry['nnz'] + 7) // 8]))
        count = entry['nnz']
    parts.append(elements(f'{name}#values', [count]))
    return parts


def _summary(entries: List[Dict[str, Any]], dropped: int) -> Dict[str, Any]:
    """Counts over the manifest's tensor entries, and what is lossy."""
    numel = sum(math.prod(e['shape']) for e in entries)
    nnz = sum(e['nnz'] for e in entries)
    reasons = []
    if any(e['stored_dtype'] != e['dtype'] for e in entries):
        reasons.append('float16 values')
    if dropped:
        reasons.append('-0.0 stored as +0.0')
    return dict(
        num_tensors=len(entries),
        num_sparse=sum(e['encoding'] != 'dense' for e in entries),
        num_dense=sum(e['encoding'] == 'dense' for e in entries),
        numel=numel,
        nnz=nnz,
        neg_zeros=sum(e['neg_zeros'] for e in entries),
        sparsity=1.0 - nnz / numel if numel else 0.0,
        neg_zeros_dropped=dropped,
        lossy=bool(reasons),
        lossy_reasons=reasons)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _as_flat_cpu(name: str, tensor: Any) -> torch.Tensor:
    """Return ``tensor`` detached, on the CPU, contiguous and 1-D."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f'state_dict[{name!r}] must be a torch.Tensor, '
                        f'but got {type(tensor).__name__}')
    if tensor.layout != torch.strided or tensor.is_quantized:
        raise TypeError(f'state_dict[{name!r}] must be a dense (strided, '
                        f'non-quantized) tensor, but got layout '
                        f'{tensor.layout}, dtype {tensor.dtype}')
    if tensor.dtype not in _DTYPE_NAMES:
        raise TypeError(f'state_dict[{name!r}] has unsupported dtype '
                        f'{tensor.dtype}; supported: {list(_DTYPES)}')
    return tensor.detach().cpu().contiguous().reshape(-1)


def _fits_fp16(flat: torch.Tensor) -> bool:
    """Whether float16 keeps every finite value of ``flat`` in range and
    every non-zero one non-zero (a value it rounded to 0 would turn a kept
    weight into a pruned one, or an SCS gate logit just above 0, an on
    gate, into an off one)."""
    if flat.numel() == 0:
        return True
    magnitude = flat.abs().nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
    if bool(magnitude.max() > _FP16_MAX):
        return False
    return not bool(((magnitude > 0) & (magnitude.half() == 0)).any())


def _packbits(bools: torch.Tensor) -> torch.Tensor:
    """Pack a 1-D bool tensor into uint8 (:func:`numpy.packbits` order)."""
    return torch.from_numpy(np.packbits(bools.numpy()))


def _as_stored(values: torch.Tensor) -> torch.Tensor:
    """``values`` as safetensors stores them: as they are, or raw bytes."""
    if values.dtype in _NATIVE:
        return values
    return values.reshape(-1).view(torch.uint8)


def _encode_tensor(
        name: str, tensor: Any, fp16: bool, keep_zero_sign: bool
) -> Tuple[Dict[str, Any], List[torch.Tensor], int]:
    """Encode one tensor by the smallest encoding.

    Returns:
        tuple: The manifest entry, its safetensors tensors (in the order of
        :func:`_parts`) and the number of ``-0.0`` written as ``+0.0``.
    """
    flat = _as_flat_cpu(name, tensor)
    dtype, numel = flat.dtype, flat.numel()
    shape = [int(s) for s in tensor.shape]
    stored = dtype
    if fp16 and dtype in _FP16_SOURCES and _fits_fp16(flat):
        stored = torch.float16
    entry: Dict[str, Any] = dict(
        name=name,
        dtype=_DTYPE_NAMES[dtype],
        shape=shape,
        encoding='dense',
        stored_dtype=_DTYPE_NAMES[stored],
        nnz=0,
        neg_zeros=0)

    if not _sparse_capable(dtype):  # integer, bool and complex128: dense
        words = flat.view(_BIT_VIEWS[min(dtype.itemsize, 8)])
        words = words.reshape(numel, dtype.itemsize // words.element_size())
        entry['nnz'] = int(words.ne(0).any(dim=1).sum())
        parts = [_as_stored(flat.reshape(shape))]
        entry['blake2b'] = _digest(parts)
        return entry, parts, 0

    bits = flat.view(_BIT_VIEWS[dtype.itemsize])
    nonzero_bits = bits != 0
    neg_zero = None
    dropped = 0
    if dtype in _SIGNED_ZERO:
        neg_zero = bits == torch.iinfo(bits.dtype).min
        if not keep_zero_sign:
            dropped = int(neg_zero.sum())
            if dropped:
                bits = bits.masked_fill(neg_zero, 0)
                nonzero_bits &= ~neg_zero
            neg_zero = None
    num_neg = int(neg_zero.sum()) if neg_zero is not None else 0
    nnz = int(nonzero_bits.sum()) - num_neg
    entry.update(nnz=nnz, neg_zeros=num_neg)

    # bytes plus the header entries of the safetensors tensors
    itemsize = stored.itemsize
    part_cost = _PART_OVERHEAD + len(name.encode('utf-8')) + 10
    mask_nbytes = (numel + 7) // 8
    costs = dict(
        dense=numel * itemsize + part_cost,
        sparse=mask_nbytes + (nnz + num_neg) * itemsize + 2 * part_cost)
    if num_neg:
        costs['sparse_zero_sign'] = (
            mask_nbytes + (numel - nnz + 7) // 8 + nnz * itemsize +
            3 * part_cost)
    # smallest wins; on a tie the simpler encoding (earlier in the dict)
    encoding = min(costs, key=costs.__getitem__)
    entry['encoding'] = encoding

    # gather bit patterns, not values: exact, and works for every dtype
    if encoding == 'dense':
        parts = [bits.view(dtype)]
    elif encoding == 'sparse':
        parts = [_packbits(nonzero_bits), bits[nonzero_bits].view(dtype)]
    else:
        keep = nonzero_bits & ~neg_zero
        parts = [
            _packbits(keep),
            _packbits(neg_zero[~keep]), bits[keep].view(dtype)
        ]
    if stored != dtype:
        parts[-1] = parts[-1].to(stored)
    if encoding == 'dense':
        parts[-1] = parts[-1].reshape(shape)
    parts[-1] = _as_stored(parts[-1])
    entry['blake2b'] = _digest(parts)
    return entry, parts, dropped


def _torch_metadata(state_dict: Mapping[str, Any]) -> Optional[dict]:
    """``state_dict._metadata`` as JSON data, or None if absent or odd."""
    metadata = getattr(state_dict, '_metadata', None)
    if not isinstance(metadata, Mapping):
        return None
    try:
        data = {str(k): dict(v) for k, v in metadata.items()}
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return data


def save_sparse_state_dict(state_dict: Mapping[str, torch.Tensor],
                           path: PathType,
                           fp16: bool = False,
                           meta: Optional[Mapping[str, Any]] = None,
                           keep_zero_sign: bool = True) -> Dict[str, Any]:
    """Write a state dict to a safetensors file without storing its zeros.

    Every entry of ``state_dict`` is written, in order, so the file loads
    into the same model. The file is written to a temporary name next to
    ``path`` and renamed when complete, so ``path`` never holds half a file.

    Args:
        state_dict (Mapping[str, torch.Tensor]): The state dict, e.g.
            ``model.state_dict()`` or ``checkpoint['state_dict']``. Tensors
            on any device are copied to the CPU.
        path (str or PathLike): The output file.
        fp16 (bool): Store the values of float32 and float64 tensors as
            float16 (lossy; the loader casts back and warns). Tensors with
            finite values beyond the float16 range, or non-zero values
            that float16 rounds to 0, stay exact.
            Defaults to False.
        meta (Mapping[str, Any], optional): JSON-serializable information
            to store in the manifest, returned by :func:`read_sparse_info`.
            Defaults to None.
        keep_zero_sign (bool): Keep ``-0.0`` bit-exact. If False, ``-0.0``
            is written as ``+0.0`` (numerically equal; the file is marked
            lossy if any was changed). Defaults to True.

    Returns:
        dict: Statistics with the keys ``file_bytes`` (size of the written
        file), ``dense_bytes`` (size of ``torch.save(state_dict)``),
        ``ratio`` (``file_bytes / dense_bytes``), ``header_bytes`` (the
        safetensors header, its length field included), ``num_tensors``,
        ``num_sparse`` (tensors in a sparse encoding), ``num_dense``,
        ``numel``, ``nnz`` (numerically non-zero elements), ``neg_zeros``
        (``-0.0`` elements kept), ``neg_zeros_dropped``, ``sparsity``
        (``1 - nnz / numel``), ``lossy`` and ``lossy_reasons``.

    Raises:
        TypeError: If an entry is not a dense tensor of a supported dtype,
            a key is not a str, or ``meta`` is not JSON-serializable.
        ValueError: If two entries would be stored under one safetensors
            name (``name#mask`` is also a key) or a key is
            ``'__metadata__'``.

    Examples:
        >>> stats = save_sparse_state_dict(model.state_dict(),
        ...                                'model.safetensors')
        >>> print(f"{stats['ratio']:.3f} of torch.save's size")
        >>> model.load_state_dict(load_sparse_state_dict('model.safetensors'))
    """
    _check_byteorder()
    if not isinstance(state_dict, Mapping):
        raise TypeError('state_dict must be a mapping of names to tensors, '
                        f'but got {type(state_dict).__name__}')
    entries: List[Dict[str, Any]] = []
    tensors: Dict[str, torch.Tensor] = {}
    owners: Dict[str, str] = {}
    storages = set()
    dropped = 0
    for name, tensor in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f'state_dict keys must be str, but got {name!r}')
        if name == '__metadata__':
            raise ValueError("the state_dict key '__metadata__' is reserved "
                             'by safetensors; rename it')
        entry, parts, tensor_dropped = _encode_tensor(name, tensor, fp16,
                                                      keep_zero_sign)
        for (key, _, _), part in zip(_parts(entry), parts):
            if key in owners:
                raise ValueError(
                    f'cannot store state_dict[{name!r}] as {key!r}: '
                    f'state_dict[{owners[key]!r}] is stored under that '
                    'name already; rename one of them')
            # safetensors refuses tensors that share memory (tied weights)
            storage = part.untyped_storage().data_ptr()
            if part.numel() and storage in storages:
                part = part.clone()
            storages.add(storage)
            owners[key], tensors[key] = name, part
        dropped += tensor_dropped
        entries.append(entry)

    manifest = dict(
        neg_zeros_dropped=dropped,
        meta=dict(meta) if meta is not None else {},
        torch_metadata=_torch_metadata(state_dict),
        tensors=entries)
    try:
        manifest_str = json.dumps(manifest, separators=(',', ':'))
    except (TypeError, ValueError) as err:
        raise TypeError(f'meta must be JSON-serializable: {err}') from err
    metadata = dict(
        format=FORMAT_NAME,
        format_version=str(FORMAT_VERSION),
        manifest=manifest_str,
        manifest_blake2b=hashlib.blake2b(
            manifest_str.encode('utf-8'),
            digest_size=_DIGEST_NBYTES).hexdigest())

    path = os.fspath(path)
    tmp_path = f'{path}.tmp{os.getpid()}'
    try:
        save_file(tensors, tmp_path, metadata=metadata)
        with open(tmp_path, 'rb') as f:
            header_nbytes = _LENGTH_NBYTES + int.from_bytes(
                f.read(_LENGTH_NBYTES), 'little')
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)

    file_nbytes = os.path.getsize(path)
    dense_bytes = dense_state_dict_bytes(state_dict)
    stats = dict(
        file_bytes=file_nbytes,
        dense_bytes=dense_bytes,
        ratio=file_nbytes / dense_bytes,
        header_bytes=header_nbytes)
    stats.update(_summary(entries, dropped))
    return stats


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def _diagnose(path: str, err: Exception) -> SparseFormatError:
    """Say why safetensors refused ``path``, by the safetensors layout:
    truncated, trailing data, not safetensors at all, or ``err``."""
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(_LENGTH_NBYTES)
        length = int.from_bytes(prefix, 'little')
        raw = f.read(length) if length <= _MAX_HEADER_NBYTES else b''
    hint = ''
    if prefix.startswith(_ZIP_MAGIC):
        hint = ' (this looks like a torch.save zip checkpoint)'
    elif prefix == _V1_MAGIC:
        hint = (' (this is a version-1 gap_mm sparse file, the container '
                'used before safetensors; this gap_mm reads version '
                f'{FORMAT_VERSION}: export the checkpoint again)')
    if hint or length > _MAX_HEADER_NBYTES or raw[:1] not in (b'', b'{'):
        return SparseFormatError(
            f'{path}: not a safetensors file: it does not start with a '
            f'header length and a JSON header{hint}')
    if len(prefix) < _LENGTH_NBYTES or len(raw) < length:
        need = _LENGTH_NBYTES + length * (len(prefix) == _LENGTH_NBYTES)
        return SparseFormatError(
            f'{path}: truncated at byte {size} of at least {need} (inside '
            'the safetensors header)')
    try:
        header = json.loads(raw)
        end = max((info['data_offsets'][1]
                   for key, info in header.items() if key != '__metadata__'),
                  default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        end = None  # safetensors' own message says what is wrong
    file_nbytes = _LENGTH_NBYTES + length + (end or 0)
    if isinstance(end, int) and size < file_nbytes:
        return SparseFormatError(
            f'{path}: truncated at byte {size} of {file_nbytes}')
    if isinstance(end, int) and size > file_nbytes:
        return SparseFormatError(
            f'{path}: unexpected trailing data: the file has {size} bytes, '
            f'the header says {file_nbytes}')
    return SparseFormatError(f'{path}: corrupted safetensors file: {err}')


def _invalid(path: str, what: str) -> SparseFormatError:
    return SparseFormatError(f'{path}: invalid manifest: {what}')


def _check_entry(path: str, index: int, entry: Any) -> None:
    """Validate one tensor entry of the manifest."""
    if not isinstance(entry, dict) or any(k not in entry for k in _ENTRY_KEYS):
        raise _invalid(
            path, f'tensor #{index} must be an object with the keys '
            f'{list(_ENTRY_KEYS)}')
    name = entry['name']
    where = f'tensor #{index} ({name!r})'
    if not isinstance(name, str) or not all(
            type(entry[k]) is int and entry[k] >= 0
            for k in ('nnz', 'neg_zeros')):
        raise _invalid(path, f'{where} has a bad name or negative counts')
    shape = entry['shape']
    if not isinstance(shape, list) or not all(
            type(s) is int and s >= 0 for s in shape):
        raise _invalid(path, f'{where} has a bad shape {shape!r}')
    for key in ('dtype', 'stored_dtype'):
        if entry[key] not in _DTYPES:
            raise _invalid(path, f'{where} has unsupported {key} '
                           f'{entry[key]!r}')
    dtype = _DTYPES[entry['dtype']]
    stored = _DTYPES[entry['stored_dtype']]
    if stored != dtype and not (dtype in _FP16_SOURCES
                                and stored == torch.float16):
        raise _invalid(path, f'{where} stores {stored} for {dtype}')
    numel = math.prod(shape)
    nnz, neg_zeros = entry['nnz'], entry['neg_zeros']
    if nnz + neg_zeros > numel or (neg_zeros and dtype not in _SIGNED_ZERO):
        raise _invalid(
            path, f'{where} counts {nnz} non-zeros and '
            f'{neg_zeros} -0.0 in {numel} {dtype} elements')
    encoding = entry['encoding']
    fits = dict(
        dense=True,
        sparse=_sparse_capable(dtype),
        sparse_zero_sign=dtype in _SIGNED_ZERO)
    if encoding not in fits:
        raise _invalid(path, f'{where} has unknown encoding {encoding!r}')
    if not fits[encoding]:
        raise _invalid(path, f'{where}: {encoding} is not for {dtype}')
    digest = entry['blake2b']
    if not (isinstance(digest, str) and len(digest) == 2 * _DIGEST_NBYTES):
        raise _invalid(path, f'{where} has a bad blake2b {digest!r}')


def _check_manifest(path: str, metadata: Optional[Dict[str, str]],
                    keys: Set[str]) -> Dict[str, Any]:
    """Check the safetensors metadata and the names of the stored tensors;
    return the manifest."""
    metadata = metadata or {}
    if metadata.get('format') != FORMAT_NAME:
        raise SparseFormatError(
            f'{path}: not a gap_mm sparse state-dict file: its safetensors '
            f'metadata has format {metadata.get("format")!r}, expected '
            f'{FORMAT_NAME!r} (a plain safetensors file loads with '
            'safetensors.torch.load_file)')
    version = metadata.get('format_version')
    if version != str(FORMAT_VERSION):
        raise SparseFormatError(
            f'{path}: unsupported version {version!r}; this gap_mm reads '
            f'version {FORMAT_VERSION}')
    raw = metadata.get('manifest', '')
    digest = hashlib.blake2b(raw.encode('utf-8'), digest_size=_DIGEST_NBYTES)
    if digest.hexdigest() != metadata.get('manifest_blake2b'):
        raise SparseFormatError(f'{path}: manifest checksum mismatch')
    try:
        manifest = json.loads(raw)
    except ValueError as err:
        raise _invalid(path, f'not JSON ({err})') from err
    tensors = manifest.get('tensors') if isinstance(manifest, dict) else None
    if not isinstance(tensors, list):
        raise _invalid(path, 'not an object with a "tensors" list')
    owners: Dict[str, str] = {}
    names = set()
    for index, entry in enumerate(tensors):
        _check_entry(path, index, entry)
        if entry['name'] in names:
            raise _invalid(path, f"duplicate tensor name {entry['name']!r}")
        names.add(entry['name'])
        for key, _, _ in _parts(entry):
            if key in owners:
                raise _invalid(
                    path, f"{entry['name']!r} and {owners[key]!r} both "
                    f'need {key!r}')
            owners[key] = entry['name']
    dropped = manifest.get('neg_zeros_dropped')
    if type(dropped) is not int or dropped < 0:
        raise _invalid(path, f'neg_zeros_dropped is {dropped!r}')
    missing = [k for k in owners if k not in keys]
    unexpected = [k for k in sorted(keys) if k not in owners]
    if missing or unexpected:
        raise _invalid(
            path, f'the file lacks the tensors {missing[:5]} and holds '
            f'tensors {unexpected[:5]} that no entry names')
    return manifest


def _open_manifest(path: str) -> Tuple[Dict[str, Any], int, int]:
    """Open ``path`` with safetensors; check and return the manifest, the
    header length (its length field included) and the file size."""
    _check_byteorder()
    try:
        with safe_open(path, framework='pt') as f:
            metadata, keys = f.metadata(), set(f.keys())
    except SafetensorError as err:
        raise _diagnose(path, err) from err
    manifest = _check_manifest(path, metadata, keys)
    with open(path, 'rb') as f:
        length = int.from_bytes(f.read(_LENGTH_NBYTES), 'little')
        size = os.fstat(f.fileno()).st_size
    return manifest, _LENGTH_NBYTES + length, size


def _unpack_bits(path: str, name: str, packed: torch.Tensor, count: int,
                 ones: int, what: str) -> torch.Tensor:
    """Unpack ``count`` bits; check their number of ones and the padding."""
    packed_np = packed.numpy()
    bools = np.unpackbits(packed_np, count=count).astype(bool)
    padding = int(packed_np[-1]) & (0xFF >> (count % 8)) if count % 8 else 0
    if int(bools.sum()) != ones or padding:
        raise SparseFormatError(
            f'{path}: the {what} of tensor {name!r} does not match the '
            f'manifest ({int(bools.sum())} bits set, expected {ones})')
    return torch.from_numpy(bools)


def _decode_tensor(path: str, entry: Dict[str, Any], f: Any) -> torch.Tensor:
    """Rebuild one tensor from its checked entry and the open file ``f``."""
    name = entry['name']
    parts = []
    for key, dtype, shape in _parts(entry):
        part = f.get_tensor(key)
        if part.dtype != dtype or list(part.shape) != shape:
            raise _invalid(
                path, f'tensor {name!r} needs {key!r} as {dtype} {shape}, '
                f'but the file holds {part.dtype} {list(part.shape)}')
        parts.append(part)
    if _digest(parts) != entry['blake2b']:
        raise SparseFormatError(
            f'{path}: checksum mismatch for tensor {name!r}')
    dtype = _DTYPES[entry['dtype']]
    stored = _DTYPES[entry['stored_dtype']]
    shape = tuple(entry['shape'])
    numel = math.prod(shape)
    nnz, neg_zeros = entry['nnz'], entry['neg_zeros']
    values = parts[-1].reshape(-1).view(stored)
    if entry['encoding'] == 'dense':
        return values.to(dtype).reshape(shape)

    neg = None
    if entry['encoding'] == 'sparse':
        keep = _unpack_bits(path, name, parts[0], numel, nnz + neg_zeros,
                            'mask')
    else:
        keep = _unpack_bits(path, name, parts[0], numel, nnz, 'mask')
        signs = _unpack_bits(path, name, parts[1], numel - nnz, neg_zeros,
                             'zero-sign mask')
        neg = torch.zeros(numel, dtype=torch.bool)
        neg[~keep] = signs
    if stored == dtype:  # exact: copy the bit patterns
        bit_view = _BIT_VIEWS[dtype.itemsize]
        flat = torch.zeros(numel, dtype=bit_view)
        flat[keep] = values.view(bit_view)
        if neg is not None:
            flat[neg] = torch.iinfo(bit_view).min
        flat = flat.view(dtype)
    else:
        flat = torch.zeros(numel, dtype=dtype)
        flat[keep] = values.to(dtype)
        if neg is not None:
            flat[neg] = -0.0
    return flat.reshape(shape)


def read_sparse_info(path: PathType) -> Dict[str, Any]:
    """Read a sparse file's header and manifest (not the tensors).

    Args:
        path (str or PathLike): The file written by
            :func:`save_sparse_state_dict`.

    Returns:
        dict: ``version``, ``meta`` (as given to the writer), ``lossy``,
        ``lossy_reasons``, ``file_bytes``, ``header_bytes``,
        ``num_tensors``, ``num_sparse``, ``num_dense``, ``numel``, ``nnz``,
        ``neg_zeros``, ``sparsity`` and ``tensors`` (the manifest's
        per-tensor entries, each with ``nbytes``, the bytes of its
        safetensors tensors).

    Raises:
        SparseFormatError: If the file is truncated, its header or
            manifest is corrupted, or it is not of this format or version.
    """
    path = os.fspath(path)
    manifest, header_nbytes, size = _open_manifest(path)
    tensors = []
    for entry in manifest['tensors']:
        nbytes = sum(
            math.prod(shape) * dtype.itemsize
            for _, dtype, shape in _parts(entry))
        tensors.append(dict(entry, nbytes=nbytes))
    info = dict(
        version=FORMAT_VERSION,
        meta=manifest.get('meta', {}),
        file_bytes=size,
        header_bytes=header_nbytes)
    info.update(_summary(manifest['tensors'], manifest['neg_zeros_dropped']))
    info['tensors'] = tensors
    return info


def load_sparse_state_dict(
    path: PathType,
    map_location: Union[str, torch.device] = 'cpu'
) -> 'OrderedDict[str, torch.Tensor]':
    """Load a file written by :func:`save_sparse_state_dict`.

    Args:
        path (str or PathLike): The sparse safetensors file.
        map_location (str or torch.device): Device of the returned tensors.
            Defaults to 'cpu'.

    Returns:
        OrderedDict[str, torch.Tensor]: An ordinary state dict with the
        original keys (in order), dtypes and shapes. Unless the file is
        lossy (written with ``fp16=True`` or ``keep_zero_sign=False``) it is
        bit-identical to the saved one. It carries ``_metadata`` if the
        saved one did.

    Raises:
        SparseFormatError: If the file is truncated, corrupted, not
            safetensors, or not of this format or version. No partially
            loaded result is returned.

    Warns:
        UserWarning: If the file is lossy.
    """
    path = os.fspath(path)
    manifest, _, _ = _open_manifest(path)
    state_dict: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    try:
        with safe_open(path, framework='pt') as f:
            for entry in manifest['tensors']:
                state_dict[entry['name']] = _decode_tensor(path, entry, f)
    except SafetensorError as err:
        raise _diagnose(path, err) from err
    if torch.device(map_location) != torch.device('cpu'):
        for name, tensor in state_dict.items():
            state_dict[name] = tensor.to(map_location)
    metadata = manifest.get('torch_metadata')
    if isinstance(metadata, dict):
        state_dict._metadata = OrderedDict(  # type: ignore[attr-defined]
            (k, v) for k, v in metadata.items())
    num_fp16 = sum(e['stored_dtype'] != e['dtype']
                   for e in manifest['tensors'])
    details = []
    if num_fp16:
        details.append(f'{num_fp16} tensors were stored as float16 and are '
                       'cast back to their original dtype')
    if manifest['neg_zeros_dropped']:
        details.append('-0.0 was stored as +0.0')
    if details:
        warnings.warn(f"{path} is lossy: {'; '.join(details)}", UserWarning)
    return state_dict
