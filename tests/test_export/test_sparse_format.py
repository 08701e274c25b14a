# Copyright (c) gap_mm contributors. All rights reserved.
import hashlib
import io
import json
import os
import pickle
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gap_mm.export import (FORMAT_NAME, FORMAT_VERSION, SparseFormatError,
                           dense_state_dict_bytes, load_sparse_state_dict,
                           read_sparse_info, save_sparse_state_dict)

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


def _header(path) -> tuple:
    """The safetensors header of ``path`` (parsed by the spec, not by
    gap_mm) and its length, the 8-byte length field included."""
    data = open(path, 'rb').read()
    length = int.from_bytes(data[:8], 'little')
    return json.loads(data[8:8 + length]), 8 + length


def _rewrite(path, manifest_fn=None, version=None) -> None:
    """Change the manifest or version, keeping the manifest's digest
    right, with safetensors' own reader and writer."""
    with safe_open(str(path), framework='pt') as f:
        metadata = f.metadata()
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    manifest = json.loads(metadata['manifest'])
    if manifest_fn is not None:
        manifest_fn(manifest)
    raw = json.dumps(manifest)
    metadata['manifest'] = raw
    metadata['manifest_blake2b'] = hashlib.blake2b(
        raw.encode(), digest_size=16).hexdigest()
    if version is not None:
        metadata['format_version'] = str(version)
    save_file(tensors, str(path), metadata=metadata)


def test_round_trip_bit_identical(tmp_path):
    state_dict = _exotic_state_dict()
    negative_zeros = sum(
        int(((t == 0) & t.signbit()).sum()) for t in state_dict.values()
        if t.is_floating_point())
    assert negative_zeros > 100  # w.mul_(mask) made -0.0

    path = tmp_path / 'model.safetensors'
    stats = save_sparse_state_dict(state_dict, path, meta=dict(note='hi'))
    assert os.listdir(tmp_path) == ['model.safetensors']  # no temporary
    assert stats['file_bytes'] == os.path.getsize(path)
    assert not stats['lossy'] and stats['neg_zeros'] >= negative_zeros - 1
    loaded = load_sparse_state_dict(path)
    _assert_bit_identical(state_dict, loaded)
    assert loaded._metadata == state_dict._metadata

    info = read_sparse_info(path)
    assert info['meta'] == dict(note='hi')
    assert info['version'] == FORMAT_VERSION
    assert info['num_tensors'] == len(state_dict)
    assert info['header_bytes'] == _header(path)[1]
    encodings = {e['name']: e['encoding'] for e in info['tensors']}
    assert encodings['conv.weight'] in ('sparse', 'sparse_zero_sign')
    assert encodings['fc.weight'] == 'sparse_zero_sign'
    assert encodings['bn.running_var'] == 'dense'
    assert encodings['bn.num_batches_tracked'] == 'dense'
    assert sum(e['nbytes'] for e in info['tensors']) == (
        info['file_bytes'] - info['header_bytes'])

    # a plain safetensors file: any reader sees the dense tensors as they
    # are and the sparse ones as mask and values
    plain = load_file(path)
    assert plain['bn.running_var'].dtype == torch.float32
    assert torch.equal(plain['bn.running_var'], state_dict['bn.running_var'])
    assert plain['fc.weight#mask'].dtype == torch.uint8
    assert plain['fc.weight#values'].numel() == int((state_dict['fc.weight']
                                                     != 0).sum())
    assert {'conv.weight#mask', 'conv.weight#values'} <= set(plain)
    with safe_open(str(path), framework='pt') as f:
        metadata = f.metadata()
    assert metadata['format'] == FORMAT_NAME
    assert metadata['format_version'] == str(FORMAT_VERSION)
    manifest = json.loads(metadata['manifest'])
    assert [e['name'] for e in manifest['tensors']] == list(state_dict)
    entry = manifest['tensors'][0]
    assert entry['dtype'] == 'float32' and entry['shape'] == [16, 3, 3, 3]


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
def test_round_trip_dtypes(tmp_path, dtype):
    state_dict = OrderedDict()
    for i, shape in enumerate([(), (0, ), (3, 0, 2), (37, 5), (1000, )]):
        state_dict[f't{i}'] = _sparse(shape, dtype, seed=i)
    state_dict['zeros'] = torch.zeros(50, dtype=dtype)
    state_dict['dense'] = torch.ones(3, dtype=dtype)
    path = tmp_path / 'x.safetensors'
    save_sparse_state_dict(state_dict, path)
    _assert_bit_identical(state_dict, load_sparse_state_dict(path))
    for fp16 in (True, False):  # other dtypes are never made lossy
        if dtype not in (torch.float32, torch.float64):
            save_sparse_state_dict(state_dict, path, fp16=fp16)
            _assert_bit_identical(state_dict, load_sparse_state_dict(path))


def test_shared_and_overlapping_tensors(tmp_path):
    """Tied weights and views of one storage, which safetensors' own
    save_file refuses, are stored as separate tensors."""
    weight = torch.randn(8, 8)
    weight[weight.abs() < 1.5] = 0
    state_dict = OrderedDict(
        a=weight, tied=weight, row=weight[0], dense=torch.randn(4))
    state_dict['dense_alias'] = state_dict['dense']
    path = tmp_path / 'tied.safetensors'
    save_sparse_state_dict(state_dict, path)
    _assert_bit_identical(state_dict, load_sparse_state_dict(path))


def test_loads_into_model(tmp_path):
    model = TinyNet()
    _prune_(model, 0.9)
    model.eval()
    path = tmp_path / 'model.safetensors'
    save_sparse_state_dict(model.state_dict(), path)
    fresh = TinyNet().eval()
    fresh.load_state_dict(
        load_sparse_state_dict(path, map_location=torch.device('cpu')))
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(fresh(x), model(x))


def test_fp16_is_lossy_within_precision(tmp_path):
    state_dict = _exotic_state_dict()
    # fc.weight's 1e-45 would keep it float32 (see extra.tiny): its NaN and
    # infinities go through float16 here
    state_dict['fc.weight'].view(-1)[4] = 1e-3
    state_dict['extra.huge'] = torch.tensor([0.0, 1e6, 1.0, 0.0, 0.0, 0.0])
    # float16 would round 1e-8 to 0: a kept weight pruned, an on gate off
    state_dict['extra.tiny'] = torch.tensor([0.0, 1e-8, -1.0, 0.0, 2.0])
    state_dict['extra.small'] = torch.tensor([0.0, 1e-6, -1.0, 0.0, 2.0])
    path = tmp_path / 'model.safetensors'
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
    assert info['extra.tiny']['stored_dtype'] == 'float32'
    assert info['extra.small']['stored_dtype'] == 'float16'  # a subnormal
    assert loaded['extra.small'][1] > 0
    assert info['fc.weight']['stored_dtype'] == 'float16'
    assert info['extra.bf16']['stored_dtype'] == 'bfloat16'
    assert load_file(path)['fc.weight#values'].dtype == torch.float16


def test_drop_zero_sign(tmp_path):
    state_dict = _exotic_state_dict()
    path = tmp_path / 'model.safetensors'
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

    stats = save_sparse_state_dict(state_dict, tmp_path / 'plus0.st')
    fp16 = save_sparse_state_dict(state_dict, tmp_path / 'fp16.st', fp16=True)
    model = _pruned_mlp(neg_zero=True)  # same masks, ~half -0.0 now
    signed = save_sparse_state_dict(model.state_dict(), tmp_path / 'signed.st')
    unsigned = save_sparse_state_dict(
        model.state_dict(), tmp_path / 'unsigned.st', keep_zero_sign=False)
    report_measurement(
        f"90% sparse fp32 model, {num_params:,} params, torch.save "
        f"{stats['dense_bytes']:,} B: ratio {stats['ratio']:.4f} "
        f"(exact, zeros +0.0; header {stats['header_bytes']:,} B), "
        f"{signed['ratio']:.4f} (exact, {signed['neg_zeros']:,} zeros "
        f"-0.0), {unsigned['ratio']:.4f} (-0.0 as +0.0), "
        f"{fp16['ratio']:.4f} (fp16 values)")
    assert 0.895 < stats['sparsity'] < 0.905
    assert stats['header_bytes'] < 4000
    assert stats['ratio'] <= 0.15
    assert unsigned['ratio'] <= 0.15
    assert signed['ratio'] <= 0.17
    assert fp16['ratio'] <= 0.09


def test_truncated_file_is_rejected(tmp_path):
    path = tmp_path / 'model.safetensors'
    save_sparse_state_dict(_exotic_state_dict(), path)
    data = path.read_bytes()
    size = len(data)
    header_end = read_sparse_info(path)['header_bytes']
    cut_path = tmp_path / 'cut.safetensors'
    for cut in sorted({
            0, 1, 7, 8, 9, 20, header_end // 2, header_end - 1, header_end,
            header_end + 1, (header_end + size) // 2, size - 1
    }):
        cut_path.write_bytes(data[:cut])
        if cut < 8:
            match = f'truncated at byte {cut} of at least 8 '
        elif cut < header_end:
            match = f'truncated at byte {cut} of at least {header_end} '
        else:
            match = f'truncated at byte {cut} of {size}$'
        for read in (load_sparse_state_dict, read_sparse_info):
            with pytest.raises(SparseFormatError, match=match) as err:
                read(cut_path)
            assert str(cut_path) in str(err.value)


def test_corrupted_file_is_rejected(tmp_path):
    path = tmp_path / 'model.safetensors'
    save_sparse_state_dict(_exotic_state_dict(), path)
    data = path.read_bytes()
    header, header_end = _header(path)
    metadata = header['__metadata__']
    text = data[:header_end]
    manifest_at = text.index(b'\\"tensors\\"')
    digest_at = text.index(metadata['manifest_blake2b'].encode())
    cases = [(manifest_at + 3, 0x01, 'manifest checksum mismatch'),
             (digest_at + 5, 0x01, 'manifest checksum mismatch'),
             (text.index(b'"format"') + 1, 0x01, 'not a gap_mm sparse'),
             (text.index(b'"format_version":"2"') + 18, 0x01,
              "unsupported version '3'")]
    for key, info in header.items():
        if key != '__metadata__' and info['data_offsets'][1] > (
                info['data_offsets'][0]):
            name = key.split('#')[0]
            for at in info['data_offsets'][0], info['data_offsets'][1] - 1:
                cases.append((header_end + at, 0x10,
                              f"checksum mismatch for tensor '{name}'"))
    bad_path = tmp_path / 'bad.safetensors'
    for offset, bit, match in cases:
        flipped = bytearray(data)
        flipped[offset] ^= bit
        bad_path.write_bytes(bytes(flipped))
        with pytest.raises(SparseFormatError, match=match) as err:
            load_sparse_state_dict(bad_path)
        assert str(bad_path) in str(err.value)

    # a flipped bit anywhere in the header is an error, never a wrong model
    small = OrderedDict(
        w=-_sparse((9, 7), torch.float32), b=torch.ones(3), n=torch.tensor(7))
    save_sparse_state_dict(small, path)
    data = path.read_bytes()
    header_end = _header(path)[1]
    for offset in range(header_end):
        flipped = bytearray(data)
        flipped[offset] ^= 1 << (offset % 8)
        bad_path.write_bytes(bytes(flipped))
        with pytest.raises(SparseFormatError) as err:
            read_sparse_info(bad_path)
        assert str(bad_path) in str(err.value)

    bad_path.write_bytes(data + b'\0')
    with pytest.raises(SparseFormatError, match='trailing data'):
        load_sparse_state_dict(bad_path)
    torch.save({'w': torch.zeros(3)}, bad_path)
    with pytest.raises(
            SparseFormatError, match='not a safetensors file.*torch.save'):
        load_sparse_state_dict(bad_path)
    bad_path.write_bytes(b'\x89GAPSPR\n\x01\x00' + bytes(100))
    with pytest.raises(SparseFormatError, match='version-1 gap_mm'):
        load_sparse_state_dict(bad_path)
    bad_path.write_bytes(b'hello, world: not a model\n')
    with pytest.raises(SparseFormatError, match='not a safetensors file'):
        load_sparse_state_dict(bad_path)
    save_file({'w': torch.zeros(3)}, str(bad_path), metadata={'format': 'pt'})
    with pytest.raises(
            SparseFormatError, match="not a gap_mm sparse.*format 'pt'"):
        load_sparse_state_dict(bad_path)


def test_inconsistent_manifest_is_rejected(tmp_path):
    path = tmp_path / 'model.safetensors'
    save_sparse_state_dict(_exotic_state_dict(), path)
    original = path.read_bytes()

    def set_field(index, key, value):

        def change(manifest):
            manifest['tensors'][index][key] = value

        return change

    cases = [
        (set_field(0, 'shape', [16, 3, 3, 4]),
         r"invalid manifest.*'conv.weight#mask' as torch.uint8 \[72\]"),
        (set_field(1, 'dtype', 'object'), 'unsupported dtype'),
        (set_field(1, 'encoding', 'zip'), 'unknown encoding'),
        (set_field(6, 'encoding', 'sparse'), 'sparse is not for'),
        (set_field(0, 'nnz', 3), 'invalid manifest'),
        (set_field(1, 'stored_dtype',
                   'float16'), "needs 'conv.bias' as torch.float16"),
        (set_field(1, 'stored_dtype', 'int8'), 'stores torch.int8 for'),
        (set_field(2, 'name', 'conv.weight'), 'duplicate tensor name'),
        (set_field(2, 'blake2b', 'ab'), 'bad blake2b'),
        (set_field(2, 'blake2b',
                   '0' * 32), "checksum mismatch for tensor 'bn.weight'"),
        (lambda m: m['tensors'].pop(), 'invalid manifest.*no entry names'),
        (lambda m: m['meta'].update(note='changed'), None),  # fine
        (lambda m: m.update(neg_zeros_dropped=-1),
         'invalid manifest.*neg_zeros_dropped'),
        (lambda m: m.update(tensors={}), 'invalid manifest.*"tensors"'),
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
    _rewrite(path, version=3)
    with pytest.raises(SparseFormatError, match="unsupported version '3'"):
        load_sparse_state_dict(path)


def test_loading_uses_no_pickle(tmp_path, monkeypatch):
    state_dict = _exotic_state_dict()
    path = tmp_path / 'model.safetensors'
    save_sparse_state_dict(state_dict, path)

    def forbidden(*args, **kwargs):
        raise AssertionError('pickle must not be used')

    for module, name in [(pickle, 'load'), (pickle, 'loads'),
                         (pickle, 'Unpickler'), (torch, 'load')]:
        monkeypatch.setattr(module, name, forbidden)
    _assert_bit_identical(state_dict, load_sparse_state_dict(path))
    assert _header(path)[0]['__metadata__']['format'] == FORMAT_NAME


def test_bad_inputs(tmp_path):
    path = tmp_path / 'x.safetensors'
    with pytest.raises(TypeError, match='must be a torch.Tensor'):
        save_sparse_state_dict({'a': [1, 2]}, path)
    with pytest.raises(TypeError, match='JSON'):
        save_sparse_state_dict({'a': torch.zeros(2)}, path, meta=dict(x={1}))
    with pytest.raises(TypeError, match='dense'):
        save_sparse_state_dict({'a': torch.eye(3).to_sparse()}, path)
    with pytest.raises(ValueError, match='__metadata__'):
        save_sparse_state_dict({'__metadata__': torch.zeros(2)}, path)
    clash = OrderedDict([('w', torch.eye(30)), ('w#mask', torch.ones(113))])
    with pytest.raises(ValueError, match=r"'w#mask'.*rename"):
        save_sparse_state_dict(clash, path)
    assert not os.listdir(tmp_path)
