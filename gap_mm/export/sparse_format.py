# Copyright (c) gap_mm contributors. All rights reserved.
r"""A compact, self-describing file format for sparse state dicts.

A GaP-trained model is stored by MMEngine as a dense ``state_dict`` in which
the pruned weights are zeros. This module writes the same ``state_dict``
without storing the zeros, and reads it back bit for bit. It uses torch,
numpy (for bit packing) and the standard library only: no pickle, no
MMEngine ``Runner``. Reading parses nothing but a fixed binary header, one
JSON document and raw bytes, so a file from an untrusted source cannot run
code.

File layout (version 1, all integers little-endian)::

    offset  size  field
    0       8     magic  b'\x89GAPSPR\n'
    8       2     format version (uint16), currently 1
    10      2     flags (uint16), must be 0 in version 1
    12      4     manifest length M in bytes (uint32)
    16      4     CRC32 of the manifest bytes (uint32)
    20      8     total file length in bytes (uint64)
    28      4     CRC32 of bytes 0..27 of this header (uint32)
    32      M     manifest: UTF-8 JSON (see below)
    32 + M  ...   payload: the tensors' bytes, back to back, in manifest order

The manifest is a JSON object::

    {"format": "gap_mm.sparse_state_dict", "version": 1,
     "byteorder": "little", "lossy": false, "lossy_reasons": [],
     "payload_nbytes": 1234,
     "meta": {...},                    # free-form JSON given by the caller
     "torch_metadata": {...} or null,  # ``state_dict._metadata`` if any
     "tensors": [
        {"name": "conv.weight", "dtype": "float32", "shape": [8, 3, 3, 3],
         "encoding": "sparse", "stored_dtype": "float32", "nnz": 22,
         "neg_zeros": 0, "offset": 0, "nbytes": 115, "crc32": 123456789},
        ...]}

``offset`` is relative to the start of the payload. The tensors are listed
in the order of the ``state_dict``, their byte ranges are contiguous, and the
last one ends at the end of the file. ``crc32`` covers the tensor's
``nbytes`` payload bytes. ``nnz`` counts the elements that are numerically
non-zero (NaN included) and ``neg_zeros`` the elements that are ``-0.0``.
A bitmask below has one bit per element in :func:`numpy.packbits` order
(the first element is the most significant bit of the first byte; the
unused bits of the last byte are 0) and takes ``ceil(count / 8)`` bytes.
Three encodings exist; ``numel`` is the product of ``shape``:

* ``dense``: the ``numel`` elements as raw bytes of ``stored_dtype``
  (row-major). ``nbytes = numel * itemsize``.
* ``sparse``: a bitmask over all elements, set where the element's **bit
  pattern** is not 0 (so ``-0.0`` counts as a value), followed by the
  ``nnz + neg_zeros`` elements whose bit is set, as raw ``stored_dtype``
  bytes. ``nbytes = ceil(numel / 8) + (nnz + neg_zeros) * itemsize``.
* ``sparse_zero_sign`` (floating dtypes only): a bitmask over all elements,
  set where the element is numerically non-zero; then a bitmask over the
  ``numel - nnz`` zeros, in order, set where the zero is ``-0.0``; then the
  ``nnz`` values. ``nbytes = ceil(numel / 8) + ceil((numel - nnz) / 8) +
  nnz * itemsize``.

Weights pruned with ``w.mul_(mask)`` are ``-0.0`` wherever ``w`` was
negative, about half of the zeros. Storing those as values would cost a
whole element each, so the writer picks, per tensor, the smallest of the
three encodings; all of them are exact. Without ``fp16`` a file therefore
loads bit-identical to its input, including signed zeros and NaN payloads.
Biases, BatchNorm statistics and integer buffers such as
``num_batches_tracked`` usually stay dense.

Two options trade exactness for size and mark the file ``"lossy": true``
(with ``lossy_reasons``); :func:`load_sparse_state_dict` then warns:

* ``fp16=True`` stores the values of float32 and float64 tensors as float16
  (``stored_dtype`` differs from ``dtype``) and the loader casts them back.
  A tensor whose finite values do not fit into float16 (``|x| > 65504``)
  keeps its own dtype and stays exact. Zero positions stay exact.
* ``keep_zero_sign=False`` writes ``-0.0`` as ``+0.0``. The two compare
  equal, so a network computes the same numbers; only the bits differ.

The loader checks, in this order, the magic, the version, the header CRC,
the file length (truncation or trailing bytes), the manifest CRC, the
manifest's structure (dtypes, shapes, byte ranges) and each tensor's CRC
and bitmask counts, and raises :class:`SparseFormatError` naming the file
and the problem instead of returning a wrong model.
"""
import io
import json
import math
import os
import struct
import sys
import warnings
import zlib
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch

__all__ = [
    'SparseFormatError', 'save_sparse_state_dict', 'load_sparse_state_dict',
    'read_sparse_info', 'dense_state_dict_bytes', 'FORMAT_VERSION', 'MAGIC'
]

PathType = Union[str, 'os.PathLike[str]']

MAGIC = b'\x89GAPSPR\n'
FORMAT_VERSION = 1
FORMAT_NAME = 'gap_mm.sparse_state_dict'

# magic, version, flags, manifest length, manifest CRC32, file length
_HEADER_BODY = struct.Struct('<8sHHIIQ')
_HEADER_CRC = struct.Struct('<I')
HEADER_NBYTES = _HEADER_BODY.size + _HEADER_CRC.size  # 32

_FP16_MAX = 65504.0

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

_ENCODINGS = ('dense', 'sparse', 'sparse_zero_sign')

_LOSSY_FP16 = 'float16 values'
_LOSSY_ZERO_SIGN = '-0.0 stored as +0.0'


class SparseFormatError(ValueError):
    """A sparse state-dict file is corrupted, truncated or unsupported."""


# --------------------------------------------------------------------------
# Writing
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
    if sys.byteorder != 'little':
        raise RuntimeError('the gap_mm sparse format is little-endian and is '
                           f'not supported on a {sys.byteorder}-endian host')


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
    """Whether all finite values of ``flat`` are representable in fp16."""
    if flat.numel() == 0:
        return True
    magnitude = flat.abs().nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
    return bool(magnitude.max() <= _FP16_MAX)


def _mask_bytes(bools: torch.Tensor) -> np.ndarray:
    """Pack a 1-D bool tensor into bits (:func:`numpy.packbits` order)."""
    return np.packbits(bools.numpy())


def _encode_tensor(name: str, tensor: Any, fp16: bool,
                   keep_zero_sign: bool) -> Tuple[Dict[str, Any], list, int]:
    """Encode one tensor.

    Returns:
        tuple: The manifest entry (without ``offset``), the payload chunks
        (whose concatenation is the tensor's payload) and the number of
        ``-0.0`` written as ``+0.0``.
    """
    flat = _as_flat_cpu(name, tensor)
    numel = flat.numel()
    stored = flat.dtype
    if fp16 and flat.dtype in _FP16_SOURCES and _fits_fp16(flat):
        stored = torch.float16
    itemsize = stored.itemsize
    entry: Dict[str, Any] = dict(
        name=name,
        dtype=_DTYPE_NAMES[flat.dtype],
        shape=[int(s) for s in tensor.shape],
        encoding='dense',
        stored_dtype=_DTYPE_NAMES[stored])

    bit_view = _BIT_VIEWS.get(flat.element_size())
    dropped = 0
    if bit_view is None:  # 16-byte elements (complex128): always dense
        words = flat.view(torch.int64).reshape(numel, flat.element_size() // 8)
        entry.update(nnz=int(words.ne(0).any(dim=1).sum()), neg_zeros=0)
        sizes = dict(dense=numel * itemsize)
    else:
        bits = flat.view(bit_view)
        nonzero_bits = bits != 0
        neg_zero = None
        if flat.dtype in _SIGNED_ZERO:
            neg_zero = bits == torch.iinfo(bit_view).min
            if not keep_zero_sign:
                dropped = int(neg_zero.sum())
                if dropped:
                    bits = bits.masked_fill(neg_zero, 0)
                    flat = bits.view(flat.dtype)
                    nonzero_bits &= ~neg_zero
                neg_zero = None
        num_neg = int(neg_zero.sum()) if neg_zero is not None else 0
        nnz = int(nonzero_bits.sum()) - num_neg
        entry.update(nnz=nnz, neg_zeros=num_neg)
        mask_nbytes = (numel + 7) // 8
        sizes = dict(
            dense=numel * itemsize,
            sparse=mask_nbytes + (nnz + num_neg) * itemsize)
        if num_neg:
            sizes['sparse_zero_sign'] = (
                mask_nbytes + (numel - nnz + 7) // 8 + nnz * itemsize)
    # smallest wins; on a tie the simpler encoding (earlier in the dict)
    encoding = min(sizes, key=sizes.__getitem__)
    entry['encoding'] = encoding

    if encoding == 'dense':
        chunks = [flat if stored == flat.dtype else flat.to(stored)]
    else:
        if encoding == 'sparse':
            keep = nonzero_bits
            chunks = [_mask_bytes(keep)]
        else:
            keep = nonzero_bits & ~neg_zero
            chunks = [_mask_bytes(keep), _mask_bytes(neg_zero[~keep])]
        if stored == flat.dtype:
            chunks.append(bits[keep])  # exact: copy the bit patterns
        else:
            chunks.append(flat[keep].to(stored))
    chunks = [
        c.view(torch.uint8).numpy() if isinstance(c, torch.Tensor) else c
        for c in chunks
    ]
    entry['nbytes'] = sum(chunk.nbytes for chunk in chunks)
    assert entry['nbytes'] == sizes[encoding]
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
    entry['crc32'] = crc
    return entry, chunks, dropped


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


def _summary(entries: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Counts over the manifest's tensor entries."""
    numel = sum(math.prod(e['shape']) for e in entries)
    nnz = sum(e['nnz'] for e in entries)
    return dict(
        num_tensors=len(entries),
        num_sparse=sum(e['encoding'] != 'dense' for e in entries),
        num_dense=sum(e['encoding'] == 'dense' for e in entries),
        numel=numel,
        nnz=nnz,
        neg_zeros=sum(e['neg_zeros'] for e in entries),
        sparsity=1.0 - nnz / numel if numel else 0.0)


def save_sparse_state_dict(state_dict: Mapping[str, torch.Tensor],
                           path: PathType,
                           fp16: bool = False,
                           meta: Optional[Mapping[str, Any]] = None,
                           keep_zero_sign: bool = True) -> Dict[str, Any]:
    """Write a state dict to ``path`` without storing its zeros.

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
            finite values beyond the float16 range stay exact.
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
        ``ratio`` (``file_bytes / dense_bytes``), ``manifest_bytes``,
        ``num_tensors``, ``num_sparse`` (tensors in a sparse encoding),
        ``num_dense``, ``numel``, ``nnz`` (numerically non-zero elements),
        ``neg_zeros`` (``-0.0`` elements kept), ``neg_zeros_dropped``,
        ``sparsity`` (``1 - nnz / numel``), ``lossy`` and
        ``lossy_reasons``.

    Examples:
        >>> stats = save_sparse_state_dict(model.state_dict(), 'm.gapsp')
        >>> print(f"{stats['ratio']:.3f} of torch.save's size")
        >>> model.load_state_dict(load_sparse_state_dict('m.gapsp'))
    """
    _check_byteorder()
    if not isinstance(state_dict, Mapping):
        raise TypeError('state_dict must be a mapping of names to tensors, '
                        f'but got {type(state_dict).__name__}')
    entries: List[Dict[str, Any]] = []
    chunks: List[np.ndarray] = []
    offset = dropped = 0
    for name, tensor in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f'state_dict keys must be str, but got {name!r}')
        entry, tensor_chunks, tensor_dropped = _encode_tensor(
            name, tensor, fp16, keep_zero_sign)
        entry['offset'] = offset
        offset += entry['nbytes']
        dropped += tensor_dropped
        entries.append(entry)
        chunks.extend(tensor_chunks)

    reasons = []
    if any(e['stored_dtype'] != e['dtype'] for e in entries):
        reasons.append(_LOSSY_FP16)
    if dropped:
        reasons.append(_LOSSY_ZERO_SIGN)
    manifest = OrderedDict(
        format=FORMAT_NAME,
        version=FORMAT_VERSION,
        byteorder='little',
        lossy=bool(reasons),
        lossy_reasons=reasons,
        payload_nbytes=offset,
        meta=dict(meta) if meta is not None else {},
        torch_metadata=_torch_metadata(state_dict),
        tensors=entries)
    try:
        manifest_bytes = json.dumps(
            manifest, separators=(',', ':')).encode('utf-8')
    except (TypeError, ValueError) as err:
        raise TypeError(f'meta must be JSON-serializable: {err}') from err

    file_nbytes = HEADER_NBYTES + len(manifest_bytes) + offset
    body = _HEADER_BODY.pack(MAGIC, FORMAT_VERSION, 0, len(manifest_bytes),
                             zlib.crc32(manifest_bytes), file_nbytes)
    header = body + _HEADER_CRC.pack(zlib.crc32(body))

    path = os.fspath(path)
    tmp_path = f'{path}.tmp{os.getpid()}'
    try:
        with open(tmp_path, 'wb') as f:
            f.write(header)
            f.write(manifest_bytes)
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)

    dense_bytes = dense_state_dict_bytes(state_dict)
    stats = dict(
        file_bytes=file_nbytes,
        dense_bytes=dense_bytes,
        ratio=file_nbytes / dense_bytes,
        manifest_bytes=len(manifest_bytes))
    stats.update(_summary(entries))
    stats.update(
        neg_zeros_dropped=dropped, lossy=bool(reasons), lossy_reasons=reasons)
    return stats


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def _read_header(f: io.BufferedReader, path: str,
                 size: int) -> Tuple[int, int]:
    """Check the fixed header and return (manifest length, manifest CRC)."""
    head = f.read(HEADER_NBYTES)
    if head[:len(MAGIC)] != MAGIC[:len(head)]:
        hint = ''
        if head.startswith(b'PK\x03\x04'):
            hint = ' (this looks like a torch.save zip checkpoint)'
        raise SparseFormatError(
            f'{path}: bad magic {head[:len(MAGIC)]!r}, expected {MAGIC!r}: '
            f'not a gap_mm sparse state-dict file{hint}')
    if len(head) < HEADER_NBYTES:
        raise SparseFormatError(
            f'{path}: truncated at byte {size} of at least {HEADER_NBYTES} '
            '(inside the header)')
    body = head[:_HEADER_BODY.size]
    _, version, flags, manifest_nbytes, manifest_crc, file_nbytes = \
        _HEADER_BODY.unpack(body)
    if version != FORMAT_VERSION or flags != 0:
        raise SparseFormatError(
            f'{path}: unsupported version {version} (flags {flags:#x}); '
            f'this gap_mm reads version {FORMAT_VERSION} (flags 0)')
    (header_crc, ) = _HEADER_CRC.unpack(head[_HEADER_BODY.size:])
    if zlib.crc32(body) != header_crc:
        raise SparseFormatError(f'{path}: header checksum mismatch')
    if size < file_nbytes:
        raise SparseFormatError(
            f'{path}: truncated at byte {size} of {file_nbytes}')
    if size > file_nbytes:
        raise SparseFormatError(
            f'{path}: unexpected trailing data: the file has {size} bytes, '
            f'the header says {file_nbytes}')
    if HEADER_NBYTES + manifest_nbytes > file_nbytes:
        raise SparseFormatError(
            f'{path}: invalid header: manifest length {manifest_nbytes} '
            f'exceeds the file length {file_nbytes}')
    return manifest_nbytes, manifest_crc


def _invalid(path: str, what: str) -> SparseFormatError:
    return SparseFormatError(f'{path}: invalid manifest: {what}')


def _check_entry(path: str, index: int, entry: Any,
                 offset: int) -> Dict[str, Any]:
    """Validate one tensor entry of the manifest; return it."""
    keys = ('name', 'dtype', 'shape', 'encoding', 'stored_dtype', 'nnz',
            'neg_zeros', 'offset', 'nbytes', 'crc32')
    if not isinstance(entry, dict) or any(k not in entry for k in keys):
        raise _invalid(
            path, f'tensor #{index} must be an object with '
            f'keys {list(keys)}')
    name = entry['name']
    where = f'tensor #{index} ({name!r})'
    ints = ('nnz', 'neg_zeros', 'offset', 'nbytes', 'crc32')
    if not isinstance(name, str) or not all(
            type(entry[k]) is int and entry[k] >= 0 for k in ints):
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
    itemsize = stored.itemsize
    encoding = entry['encoding']
    if encoding == 'dense':
        expected = numel * itemsize
    elif encoding in _ENCODINGS and dtype.itemsize in _BIT_VIEWS:
        expected = (numel + 7) // 8
        if encoding == 'sparse':
            expected += (nnz + neg_zeros) * itemsize
        elif dtype in _SIGNED_ZERO:
            expected += (numel - nnz + 7) // 8 + nnz * itemsize
        else:
            raise _invalid(
                path, f'{where}: {encoding} needs a floating '
                f'dtype, not {dtype}')
    else:
        raise _invalid(
            path, f'{where} has unknown encoding {encoding!r} '
            f'for {dtype}')
    if entry['nbytes'] != expected or entry['offset'] != offset:
        raise _invalid(
            path, f"{where} spans bytes {entry['offset']}+"
            f"{entry['nbytes']}, expected {offset}+{expected}")
    return entry


def _read_manifest(path: str) -> Tuple[Dict[str, Any], int, int]:
    """Read and validate header and manifest.

    Returns:
        tuple: The manifest, the payload's file offset and the file size.
    """
    _check_byteorder()
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        manifest_nbytes, manifest_crc = _read_header(f, path, size)
        raw = f.read(manifest_nbytes)
    if zlib.crc32(raw) != manifest_crc:
        raise SparseFormatError(f'{path}: manifest checksum mismatch')
    try:
        manifest = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as err:
        raise _invalid(path, f'not JSON ({err})') from err
    if not isinstance(manifest, dict):
        raise _invalid(path, 'not a JSON object')
    if manifest.get('format') != FORMAT_NAME or manifest.get(
            'version') != FORMAT_VERSION:
        raise _invalid(
            path, f"format {manifest.get('format')!r} version "
            f"{manifest.get('version')!r}, expected {FORMAT_NAME!r} "
            f'version {FORMAT_VERSION}')
    if manifest.get('byteorder') != 'little':
        raise _invalid(path, f"byteorder {manifest.get('byteorder')!r}")
    tensors = manifest.get('tensors')
    if not isinstance(tensors, list):
        raise _invalid(path, '"tensors" must be a list')
    offset = 0
    names = set()
    for index, entry in enumerate(tensors):
        _check_entry(path, index, entry, offset)
        if entry['name'] in names:
            raise _invalid(path, f"duplicate tensor name {entry['name']!r}")
        names.add(entry['name'])
        offset += entry['nbytes']
    payload_start = HEADER_NBYTES + manifest_nbytes
    if offset != size - payload_start or manifest.get(
            'payload_nbytes') != offset:
        raise _invalid(
            path, f'the tensors span {offset} payload bytes, but the '
            f'file holds {size - payload_start}')
    reasons = manifest.get('lossy_reasons')
    fp16 = any(e['stored_dtype'] != e['dtype'] for e in tensors)
    if (not isinstance(reasons, list)
            or manifest.get('lossy') is not bool(reasons)
            or fp16 is not (_LOSSY_FP16 in reasons)):
        raise _invalid(
            path, f"lossy is {manifest.get('lossy')!r} with reasons "
            f'{reasons!r}, but float16 storage is {fp16}')
    return manifest, payload_start, size


def _unpack_bits(path: str, name: str, packed: np.ndarray, count: int,
                 ones: int, what: str) -> torch.Tensor:
    """Unpack ``count`` bits; check their number of ones and the padding."""
    bools = np.unpackbits(packed, count=count).astype(bool)
    padding = int(packed[-1]) & (0xFF >> (count % 8)) if count % 8 else 0
    if int(bools.sum()) != ones or padding:
        raise SparseFormatError(
            f'{path}: the {what} of tensor {name!r} does not match the '
            f'manifest ({int(bools.sum())} bits set, expected {ones})')
    return torch.from_numpy(bools)


def _decode_tensor(path: str, entry: Dict[str, Any],
                   payload: bytearray) -> torch.Tensor:
    """Rebuild one tensor from its checked manifest entry."""
    name, offset, nbytes = entry['name'], entry['offset'], entry['nbytes']
    view = memoryview(payload)[offset:offset + nbytes]
    if zlib.crc32(view) != entry['crc32']:
        raise SparseFormatError(
            f'{path}: checksum mismatch for tensor {name!r}')
    dtype = _DTYPES[entry['dtype']]
    stored = _DTYPES[entry['stored_dtype']]
    shape = tuple(entry['shape'])
    numel = math.prod(shape)
    nnz, neg_zeros = entry['nnz'], entry['neg_zeros']

    def as_tensor(start: int, stop: int, as_dtype: torch.dtype):
        raw = np.frombuffer(view[start:stop], dtype=np.uint8)
        return torch.tensor(raw).view(as_dtype)

    if entry['encoding'] == 'dense':
        return as_tensor(0, nbytes, stored).to(dtype).reshape(shape)

    start = (numel + 7) // 8
    packed = np.frombuffer(view[:start], dtype=np.uint8)
    neg = None
    if entry['encoding'] == 'sparse':
        keep = _unpack_bits(path, name, packed, numel, nnz + neg_zeros, 'mask')
    else:
        keep = _unpack_bits(path, name, packed, numel, nnz, 'mask')
        stop = start + (numel - nnz + 7) // 8
        signs = _unpack_bits(path, name,
                             np.frombuffer(view[start:stop], np.uint8),
                             numel - nnz, neg_zeros, 'zero-sign mask')
        neg = torch.zeros(numel, dtype=torch.bool)
        neg[~keep] = signs
        start = stop
    if stored == dtype:  # exact: copy the bit patterns
        bit_view = _BIT_VIEWS[dtype.itemsize]
        flat = torch.zeros(numel, dtype=bit_view)
        flat[keep] = as_tensor(start, nbytes, bit_view)
        if neg is not None:
            flat[neg] = torch.iinfo(bit_view).min
        flat = flat.view(dtype)
    else:
        flat = torch.zeros(numel, dtype=dtype)
        flat[keep] = as_tensor(start, nbytes, stored).to(dtype)
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
        ``lossy_reasons``, ``file_bytes``, ``manifest_bytes``,
        ``num_tensors``, ``num_sparse``, ``num_dense``, ``numel``, ``nnz``,
        ``neg_zeros``, ``sparsity`` and ``tensors`` (the manifest's
        per-tensor entries).

    Raises:
        SparseFormatError: If the header or manifest is corrupted,
            truncated or of an unsupported version.
    """
    path = os.fspath(path)
    manifest, payload_start, size = _read_manifest(path)
    info = dict(
        version=manifest['version'],
        meta=manifest.get('meta', {}),
        lossy=manifest['lossy'],
        lossy_reasons=manifest['lossy_reasons'],
        file_bytes=size,
        manifest_bytes=payload_start - HEADER_NBYTES)
    info.update(_summary(manifest['tensors']))
    info['tensors'] = manifest['tensors']
    return info


def load_sparse_state_dict(
    path: PathType,
    map_location: Union[str, torch.device] = 'cpu'
) -> 'OrderedDict[str, torch.Tensor]':
    """Load a file written by :func:`save_sparse_state_dict`.

    Args:
        path (str or PathLike): The sparse file.
        map_location (str or torch.device): Device of the returned tensors.
            Defaults to 'cpu'.

    Returns:
        OrderedDict[str, torch.Tensor]: An ordinary state dict with the
        original keys (in order), dtypes and shapes. Unless the file is
        lossy (written with ``fp16=True`` or ``keep_zero_sign=False``) it is
        bit-identical to the saved one. It carries ``_metadata`` if the
        saved one did.

    Raises:
        SparseFormatError: If the file is corrupted, truncated or of an
            unsupported version. No partially loaded result is returned.

    Warns:
        UserWarning: If the file is lossy.
    """
    path = os.fspath(path)
    manifest, payload_start, size = _read_manifest(path)
    payload = bytearray(size - payload_start)
    with open(path, 'rb') as f:
        f.seek(payload_start)
        got = f.readinto(payload)
    if got != len(payload):
        raise SparseFormatError(
            f'{path}: truncated at byte {payload_start + got} of {size}')

    state_dict: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    for entry in manifest['tensors']:
        state_dict[entry['name']] = _decode_tensor(path, entry, payload)
    if torch.device(map_location) != torch.device('cpu'):
        for name, tensor in state_dict.items():
            state_dict[name] = tensor.to(map_location)
    metadata = manifest.get('torch_metadata')
    if isinstance(metadata, dict):
        state_dict._metadata = OrderedDict(  # type: ignore[attr-defined]
            (k, v) for k, v in metadata.items())
    if manifest['lossy']:
        num_fp16 = sum(e['stored_dtype'] != e['dtype']
                       for e in manifest['tensors'])
        details = []
        if num_fp16:
            details.append(f'{num_fp16} tensors were stored as float16 and '
                           'are cast back to their original dtype')
        if _LOSSY_ZERO_SIGN in manifest['lossy_reasons']:
            details.append('-0.0 was stored as +0.0')
        warnings.warn(f"{path} is lossy: {'; '.join(details)}", UserWarning)
    return state_dict
