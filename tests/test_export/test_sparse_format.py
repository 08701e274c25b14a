# Copyright (c) gap_mm contributors. All rights reserved.
import io
import json
import os
import pickle
import struct
import zlib
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from gap_mm.export import (MAGIC, SparseFormatError, dense_state_dict_bytes,
                           load_sparse_state_dict, read_sparse_info,
                           save_sparse_state_dict)
from gap_mm.export.sparse_format import HEADER_NBYTES

DTYPES = [
    getattr(torch, name)
    for name in ('float64', 'float32', 'float16', 'bfloat16', 'complex64',
                 'complex128', 'int8', 'int16', 'int32', 'int64', 'uint8',
                 'uint16', 'uint32', 'uint64', 'bool', 'float8_e4m3fn',
                 'float8_e5m2') if hasattr(torch, name)
]


class TinyNet(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).relu().flatten(1))


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def _assert_bit_identical(expected, actual) -> None:
    assert isinstance(actual, OrderedDict)
    assert list(actual) == list(expected)
    for name, ref in expected.items():
        got = actual[name]
        assert type(got) is torch.Tensor, name
        assert got.dtype == ref.dtype and got.shape == ref.shape, name
        assert torch.equal(_bits(got), _bits(ref)), name


def _prune_(module: nn.Module,
            sparsity: float,
            seed: int = 0,
            neg_zero: bool = True) -> None:
    """Zero a random ``sparsity`` of every weight with ``dim > 1``.

    With ``neg_zero`` the weights are multiplied by the mask, as a float
    mask does in training, so negative pruned weights become -0.0.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            if param.dim() > 1:
                keep = torch.rand(param.shape, generator=gen) >= sparsity
                if neg_zero:
                    param.mul_(keep)
                else:
                    param.masked_fill_(~keep, 0)


def _sparse(shape, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(shape, generator=gen) * 10
    values = values * (torch.rand(shape, generator=gen) >= 0.9)
    if dtype.is_complex:
        return torch.complex(values, -values).to(dtype)
    if dtype == torch.bool:
        return values != 0
    return values.to(dtype)


def _exotic_state_dict() -> 'OrderedDict[str, torch.Tensor]':
    model = TinyNet()
    _prune_(model, 0.9)
    model.bn.num_batches_tracked.fill_(7)
    model.bn.running_var.uniform_(0.5, 2.0)
    state_dict = model.state_dict()
    weight = state_dict['fc.weight'].view(-1)
    weight[:5] = torch.tensor(
        [-0.0, float('nan'),
         float('inf'), -float('inf'), 1e-45])
    # a NaN with a non-default payload must survive bit for bit
    weight[5:6] = torch.tensor([0x7FC00123],
                               dtype=torch.int32).view(torch.float32)
    state_dict['extra.scalar'] = torch.tensor(3.5)
    state_dict['extra.scalar_neg_zero'] = torch.tensor(-0.0)
    state_dict['extra.scalar_int'] = torch.tensor(0, dtype=torch.int64)
    state_dict['extra.empty'] = torch.empty(0, 5)
    state_dict['extra.empty_int'] = torch.empty(3, 0, dtype=torch.int32)
    state_dict['extra.int_buffer'] = torch.arange(-5, 60, dtype=torch.int64)
    state_dict['extra.fp16'] = -_sparse((33, 7), torch.float16, seed=1)
    state_dict['extra.bf16'] = _sparse((64, 9), torch.bfloat16, seed=2)
    state_dict['extra.f64'] = _sparse((17, 3), torch.float64, seed=3)
    state_dict['extra.mask'] = _sparse((100, ), torch.bool, seed=4)
    state_dict['extra.noncontig'] = _sparse((12, 10), torch.float32).t()
    return state_dict


def _rewrite(path, manifest_fn=None, version=None) -> None:
    """Change the manifest or version and recompute every checksum."""
    data = open(path, 'rb').read()
    body = struct.Struct('<8sHHIIQ')
    magic, ver, flags, mlen, _, _ = body.unpack(data[:body.size])
    manifest = json.loads(data[HEADER_NBYTES:HEADER_NBYTES + mlen])
    if manifest_fn is not None:
        manifest_fn(manifest)
    raw = json.dumps(manifest).encode()
    payload = data[HEADER_NBYTES + mlen:]
    head = body.pack(magic,
                     ver if version is None else version, flags, len(raw),
                     zlib.crc32(raw), HEADER_NBYTES + len(raw) + len(payload))
    with open(path, 'wb') as f:
        f.write(head + struct.pack('<I', zlib.crc32(head)) + raw + payload)


def test_round_trip_bit_identical(tmp_path):
    state_dict = _exotic_state_dict()
    negative_zeros = sum(
        int(((t == 0) & t.signbit()).sum()) for t in state_dict.values()
        if t.is_floating_point())
    assert negative_zeros > 100  # w.mul_(mask) made -0.0

    path = tmp_path / 'model.gapsp'
    stats = save_sparse_state_dict(state_dict, path, meta=dict(note='hi'))
    assert os.listdir(tmp_path) == ['model.gapsp']  # no temporary left
    assert stats['file_bytes'] == os.path.getsize(path)
    assert not stats['lossy'] and stats['neg_zeros'] >= negative_zeros - 1
    loaded = load_sparse_state_dict(path)
    _assert_bit_identical(state_dict, loaded)
    assert loaded._metadata == state_dict._metadata

    info = read_sparse_info(path)
    assert info['meta'] == dict(note='hi')
    assert info['num_tensors'] == len(state_dict)
    encodings = {e['name']: e['encoding'] for e in info['tensors']}
    assert encodings['conv.weight'] in ('sparse', 'sparse_zero_sign')
    assert encodings['fc.weight'] == 'sparse_zero_sign'
    assert encodings['bn.running_var'] == 'dense'
    assert encodings['bn.num_batches_tracked'] == 'dense'


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
def test_round_trip_dtypes(tmp_path, dtype):
    state_dict = OrderedDict()
    for i, shape in enumerate([(), (0, ), (3, 0, 2), (37, 5), (1000, )]):
        state_dict[f't{i}'] = _sparse(shape, dtype, seed=i)
    state_dict['zeros'] = torch.zeros(50, dtype=dtype)
    state_dict['dense'] = torch.ones(3, dtype=dtype)
    path = tmp_path / 'x.gapsp'
    save_sparse_state_dict(state_dict, path)
    _assert_bit_identical(state_dict, load_sparse_state_dict(path))
    for fp16 in (True, False):  # other dtypes are never made lossy
        if dtype not in (torch.float32, torch.float64):
            save_sparse_state_dict(state_dict, path, fp16=fp16)
            _assert_bit_identical(state_dict, load_sparse_state_dict(path))


def test_loads_into_model(tmp_path):
    model = TinyNet()
    _prune_(model, 0.9)
    model.eval()
    path = tmp_path / 'model.gapsp'
    save_sparse_state_dict(model.state_dict(), path)
    fresh = TinyNet().eval()
    fresh.load_state_dict(
        load_sparse_state_dict(path, map_location=torch.device('cpu')))
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(fresh(x), model(x))


def test_fp16_is_lossy_within_precision(tmp_path):
    state_dict = _exotic_state_dict()
    state_dict['extra.huge'] = torch.tensor([0.0, 1e6, 1.0, 0.0, 0.0, 0.0])
    path = tmp_path / 'model.gapsp'
    stats = save_sparse_state_dict(state_dict, path, fp16=True)
    assert stats['lossy'] and stats['lossy_reasons'] == ['float16 values']
    with pytest.warns(UserWarning, match='lossy.*float16'):
        loaded = load_sparse_state_dict(path)
    assert list(loaded) == list(state_dict)
    info = {e['name']: e for e in read_sparse_info(path)['tensors']}
    for name, ref in state_dict.items():
        got = loaded[name]
        assert got.dtype == ref.dtype and got.shape == ref.shape, name
        if info[name]['stored_dtype'] == 'float16' and ref.dtype in (
                torch.float32, torch.float64):
            expected = ref.to(torch.float16).to(ref.dtype)
            assert torch.equal(got.isnan(), ref.isnan()), name
            assert torch.equal(got.nan_to_num(), expected.nan_to_num())
            torch.testing.assert_close(
                got, ref, rtol=2**-10, atol=6e-8, equal_nan=True)
            assert not got[ref == 0].any(), name  # zeros stay zeros
        else:  # integer, fp16, bf16 and out-of-range tensors stay exact
            assert torch.equal(_bits(got), _bits(ref)), name
    assert info['extra.huge']['stored_dtype'] == 'float32'
    assert info['fc.weight']['stored_dtype'] == 'float16'
    assert info['extra.bf16']['stored_dtype'] == 'bfloat16'


def test_drop_zero_sign(tmp_path):
    state_dict = _exotic_state_dict()
    path = tmp_path / 'model.gapsp'
    stats = save_sparse_state_dict(state_dict, path, keep_zero_sign=False)
    assert stats['neg_zeros'] == 0 and stats['neg_zeros_dropped'] > 100
    assert stats['lossy_reasons'] == ['-0.0 stored as +0.0']
    with pytest.warns(UserWarning, match=r'-0\.0 was stored as \+0\.0'):
        loaded = load_sparse_state_dict(path)
    for name, ref in state_dict.items():
        got = loaded[name]
        assert got.dtype == ref.dtype and got.shape == ref.shape
        if ref.is_floating_point():
            assert not (got.signbit() & (got == 0)).any(), name
            assert torch.equal(got.isnan(), ref.isnan())
            assert torch.equal(got.nan_to_num(), ref.nan_to_num()), name
        else:
            assert torch.equal(got, ref)


def _pruned_mlp(neg_zero: bool) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(1024, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
        nn.Linear(1024, 16))
    _prune_(model, 0.9, neg_zero=neg_zero)
    return model


def test_size_ratio_at_90_percent(tmp_path, report_measurement):
    model = _pruned_mlp(neg_zero=False)
    num_params = sum(p.numel() for p in model.parameters())
    assert num_params >= 1_000_000
    state_dict = model.state_dict()

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    assert dense_state_dict_bytes(state_dict) == len(buffer.getvalue())

    stats = save_sparse_state_dict(state_dict, tmp_path / 'plus0.gapsp')
    fp16 = save_sparse_state_dict(
        state_dict, tmp_path / 'fp16.gapsp', fp16=True)
    model = _pruned_mlp(neg_zero=True)  # same masks, ~half -0.0 now
    signed = save_sparse_state_dict(model.state_dict(),
                                    tmp_path / 'signed.gapsp')
    unsigned = save_sparse_state_dict(
        model.state_dict(), tmp_path / 'unsigned.gapsp', keep_zero_sign=False)
    report_measurement(
        f"90% sparse fp32 model, {num_params:,} params, torch.save "
        f"{stats['dense_bytes']:,} B: ratio {stats['ratio']:.4f} "
        f"(exact, zeros +0.0), {signed['ratio']:.4f} (exact, "
        f"{signed['neg_zeros']:,} zeros -0.0), {unsigned['ratio']:.4f} "
        f"(-0.0 as +0.0), {fp16['ratio']:.4f} (fp16 values)")
    assert 0.895 < stats['sparsity'] < 0.905
    assert stats['manifest_bytes'] < 2000
    assert stats['ratio'] <= 0.15
    assert unsigned['ratio'] <= 0.15
    assert signed['ratio'] <= 0.17
    assert fp16['ratio'] <= 0.09


def test_truncated_file_is_rejected(tmp_path):
    path = tmp_path / 'model.gapsp'
    save_sparse_state_dict(_exotic_state_dict(), path)
    data = path.read_bytes()
    size = len(data)
    manifest_end = HEADER_NBYTES + read_sparse_info(path)['manifest_bytes']
    cut_path = tmp_path / 'cut.gapsp'
    for cut in sorted({
            0, 1, 7, 8, 20, HEADER_NBYTES - 1, HEADER_NBYTES,
            HEADER_NBYTES + 10, manifest_end - 1, manifest_end,
            manifest_end + 1, (manifest_end + size) // 2, size - 1
    }):
        cut_path.write_bytes(data[:cut])
        if cut < HEADER_NBYTES:
            match = (f'truncated at byte {cut} of at least {HEADER_NBYTES}')
        else:
            match = f'truncated at byte {cut} of {size}'
        with pytest.raises(SparseFormatError, match=match) as err:
            load_sparse_state_dict(cut_path)
        assert str(cut_path) in str(err.value)


def test_corrupted_file_is_rejected(tmp_path):
    path = tmp_path / 'model.gapsp'
    save_sparse_state_dict(_exotic_state_dict(), path)
    data = path.read_bytes()
    info = read_sparse_info(path)
    payload = HEADER_NBYTES + info['manifest_bytes']
    cases = [(0, 'bad magic'), (7, 'bad magic'), (8, 'unsupported version'),
             (10, 'unsupported version'), (12, 'header checksum mismatch'),
             (20, 'header checksum mismatch'),
             (28, 'header checksum mismatch'),
             (HEADER_NBYTES + 5, 'manifest checksum mismatch'),
             (payload - 1, 'manifest checksum mismatch')]
    for entry in info['tensors']:
        for at in {entry['offset'], entry['offset'] + entry['nbytes'] - 1}:
            if entry['nbytes']:
                cases.append((payload + at, 'checksum mismatch for tensor '
                              f"'{entry['name']}'"))
    bad_path = tmp_path / 'bad.gapsp'
    for offset, match in cases:
        flipped = bytearray(data)
        flipped[offset] ^= 0x10
        bad_path.write_bytes(bytes(flipped))
        with pytest.raises(SparseFormatError, match=match) as err:
            load_sparse_state_dict(bad_path)
        assert str(bad_path) in str(err.value)

    bad_path.write_bytes(data + b'\0')
    with pytest.raises(SparseFormatError, match='trailing data'):
        load_sparse_state_dict(bad_path)
    torch.save({'w': torch.zeros(3)}, bad_path)
    with pytest.raises(SparseFormatError, match='bad magic.*torch.save'):
        load_sparse_state_dict(bad_path)


def test_inconsistent_manifest_is_rejected(tmp_path):
    path = tmp_path / 'model.gapsp'
    save_sparse_state_dict(_exotic_state_dict(), path)
    original = path.read_bytes()

    def set_field(index, key, value):

        def change(manifest):
            manifest['tensors'][index][key] = value

        return change

    cases = [
        (set_field(0, 'shape', [16, 3, 3, 4]), 'invalid manifest.*spans'),
        (set_field(1, 'dtype', 'object'), 'unsupported dtype'),
        (set_field(1, 'encoding', 'zip'), 'unknown encoding'),
        (set_field(0, 'nnz', 3), 'invalid manifest'),
        (set_field(2, 'name', 'conv.weight'), 'duplicate tensor name'),
        (lambda m: m['tensors'].pop(), 'invalid manifest.*payload bytes'),
        (lambda m: m.update(lossy=False, lossy_reasons=[]),
         None),  # consistent: fine
        (lambda m: m.update(lossy=True), 'invalid manifest.*lossy'),
    ]
    for change, match in cases:
        path.write_bytes(original)
        _rewrite(path, change)
        if match is None:
            load_sparse_state_dict(path)
            continue
        with pytest.raises(SparseFormatError, match=match):
            load_sparse_state_dict(path)

    path.write_bytes(original)
    _rewrite(path, version=2)
    with pytest.raises(SparseFormatError, match='unsupported version 2'):
        load_sparse_state_dict(path)


def test_loading_uses_no_pickle(tmp_path, monkeypatch):
    state_dict = _exotic_state_dict()
    path = tmp_path / 'model.gapsp'
    save_sparse_state_dict(state_dict, path)

    def forbidden(*args, **kwargs):
        raise AssertionError('pickle must not be used')

    for module, name in [(pickle, 'load'), (pickle, 'loads'),
                         (pickle, 'Unpickler'), (torch, 'load')]:
        monkeypatch.setattr(module, name, forbidden)
    _assert_bit_identical(state_dict, load_sparse_state_dict(path))
    assert path.read_bytes().startswith(MAGIC)


def test_bad_inputs(tmp_path):
    path = tmp_path / 'x.gapsp'
    with pytest.raises(TypeError, match='must be a torch.Tensor'):
        save_sparse_state_dict({'a': [1, 2]}, path)
    with pytest.raises(TypeError, match='JSON'):
        save_sparse_state_dict({'a': torch.zeros(2)}, path, meta=dict(x={1}))
    with pytest.raises(TypeError, match='dense'):
        save_sparse_state_dict({'a': torch.eye(3).to_sparse()}, path)
    assert not os.listdir(tmp_path)
