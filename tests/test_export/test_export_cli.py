# Copyright (c) gap_mm contributors. All rights reserved.
import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from gap_mm.export import load_sparse_state_dict, read_sparse_info
from gap_mm.sparsity.packing import pack_mask

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / 'tools' / 'model_converters' / 'export_sparse.py'
PUBLISH = REPO / 'tools' / 'model_converters' / 'publish_model.py'


def _run(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(REPO)] + [p for p in [env.get('PYTHONPATH')] if p])
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300)


def _fake_checkpoint(sparsity: float = 0.9) -> dict:
    """An MMEngine-style checkpoint of a GaP-pruned model."""
    history_buffer = pytest.importorskip(
        'mmengine.logging.history_buffer').HistoryBuffer
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32), nn.ReLU(), nn.Flatten(),
        nn.Linear(32 * 6 * 6, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()

    masks = {}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                keep = torch.rand(param.shape) >= sparsity
                param.mul_(keep)  # -0.0 where the weight was negative
                masks[name] = pack_mask(keep)
    loss = history_buffer()
    loss.update(1.5)
    loss.update(1.25)
    return dict(
        meta=dict(
            epoch=3,
            iter=300,
            seed=42,
            cfg='model = dict(type="Toy")',
            dataset_meta=dict(classes=('cat', 'dog'), palette=[(1, 2, 3)]),
            best_score=np.float64(0.5)),
        state_dict=model.state_dict(),
        optimizer=optimizer.state_dict(),
        param_schedulers=[dict(base_lrs=[0.1], last_step=300)],
        message_hub=dict(
            log_scalars={'train/loss': loss},
            runtime_info=dict(epoch=3, iter=300),
            resumed_keys=dict(epoch=True)),
        gap_state=dict(
            version=1,
            sparsifier=dict(masks=masks),
            step=3,
            by_epoch=False,
            dense_partitions=[]))


def test_export_cli(tmp_path):
    checkpoint = _fake_checkpoint()
    ckpt_path, out = tmp_path / 'epoch_3.pth', tmp_path / 'model.safetensors'
    torch.save(checkpoint, ckpt_path)

    result = _run(ckpt_path, out)
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    for text in ('dropped training state', 'optimizer', 'message_hub',
                 'param_schedulers', 'gap_state', 'verified: every weight',
                 'dense state_dict (torch.save)', 'original checkpoint',
                 'exported sparse file', 'overall sparsity', 'lossless'):
        assert text in result.stdout, text

    loaded = load_sparse_state_dict(out)
    assert list(loaded) == list(checkpoint['state_dict'])
    for name, ref in checkpoint['state_dict'].items():
        assert loaded[name].dtype == ref.dtype
        assert torch.equal(loaded[name].reshape(-1).view(torch.uint8),
                           ref.reshape(-1).view(torch.uint8)), name
    info = read_sparse_info(out)
    meta = info['meta']
    assert meta['epoch'] == 3 and meta['best_score'] == 0.5
    assert meta['dataset_meta']['classes'] == ['cat', 'dog']
    assert meta['sparse_export'] == dict(
        source='epoch_3.pth', fp16=False, drop_zero_sign=False, gap_masks=3)
    assert info['file_bytes'] < 0.2 * os.path.getsize(ckpt_path)

    result = _run(ckpt_path, out, '--fp16', '--drop-zero-sign')
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    assert 'lossy' in result.stdout
    with pytest.warns(UserWarning, match='lossy'):
        lossy = load_sparse_state_dict(out)
    assert lossy['4.weight'].dtype == torch.float32
    assert read_sparse_info(out)['file_bytes'] < info['file_bytes']


def test_export_cli_refuses_nonzero_masked_weight(tmp_path):
    checkpoint = _fake_checkpoint()
    weight = checkpoint['state_dict']['4.weight']
    masks = checkpoint['gap_state']['sparsifier']['masks']
    pruned = torch.nonzero(weight == 0)[:3]
    weight[tuple(pruned.t())] = 0.25
    ckpt_path, out = tmp_path / 'dirty.pth', tmp_path / 'dirty.safetensors'
    torch.save(checkpoint, ckpt_path)

    result = _run(ckpt_path, out)
    assert result.returncode != 0
    assert '3 weights pruned by the GaP masks are not 0' in result.stderr
    assert '4.weight (3)' in result.stderr
    assert '--allow-nonzero-masked' in result.stderr
    assert not out.exists()

    result = _run(ckpt_path, out, '--allow-nonzero-masked')
    assert result.returncode == 0, result.stderr
    assert 'warning: 3 weights pruned' in result.stdout
    assert torch.equal(load_sparse_state_dict(out)['4.weight'], weight)

    checkpoint['gap_state']['sparsifier']['masks'] = {
        'missing.weight': masks['4.weight']
    }
    torch.save(checkpoint, ckpt_path)
    result = _run(ckpt_path, out)
    assert result.returncode != 0
    assert 'not in the state_dict' in result.stderr


def test_export_cli_refuses_unsafe_globals(tmp_path):
    checkpoint = dict(
        meta=dict(args=argparse.Namespace(lr=0.1)),
        state_dict=dict(w=torch.zeros(4)))
    ckpt_path, out = tmp_path / 'unsafe.pth', tmp_path / 'unsafe.safetensors'
    torch.save(checkpoint, ckpt_path)
    result = _run(ckpt_path, out)
    assert result.returncode != 0
    assert 'weights_only' in result.stderr
    assert 'argparse.Namespace' in result.stderr
    assert not out.exists()


def _tool(script: Path):
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('script', [SCRIPT, PUBLISH], ids=lambda s: s.stem)
def test_tools_exit_with_one_line_errors(tmp_path, script):
    """A missing file, a non-checkpoint, a checkpoint without a state_dict
    and masks that do not fit the weights end the tool with one line (the
    message of SystemExit, printed without a traceback)."""
    main = _tool(script).main
    out = tmp_path / 'out.bin'
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint\n')
    listing = tmp_path / 'list.pth'
    torch.save([1, 2], listing)
    no_weights = tmp_path / 'no_weights.pth'
    torch.save(dict(meta=dict(epoch=1)), no_weights)
    mismatch = tmp_path / 'mismatch.pth'
    checkpoint = _fake_checkpoint()
    masks = checkpoint['gap_state']['sparsifier']['masks']
    masks['0.weight'] = masks['4.weight']
    torch.save(checkpoint, mismatch)
    cases = [(tmp_path / 'missing.pth', 'does not exist'),
             (text, 'is not a PyTorch checkpoint.*Unsupported operand'),
             (listing, 'holds a list, not a dict'),
             (no_weights, 'has no "state_dict"'),
             (mismatch, 'GaP masks do not match the weights.*0.weight')]
    for path, match in cases:
        with pytest.raises(SystemExit, match=match) as err:
            main([str(path), str(out)])
        message = str(err.value)
        assert message.startswith('error: ') and '\n' not in message
        assert str(path) in message or 'masks' in message
        assert not out.exists()


def test_publish_model(tmp_path):
    checkpoint = _fake_checkpoint()
    ckpt_path, out = tmp_path / 'epoch_3.pth', tmp_path / 'published.pth'
    torch.save(checkpoint, ckpt_path)
    assert _tool(PUBLISH).main([str(ckpt_path), str(out)]) == 0
    published = torch.load(out, map_location='cpu', weights_only=True)
    assert set(published) == {'state_dict', 'meta'}
    assert published['meta']['best_score'] == 0.5
    state_dict = published['state_dict']
    assert state_dict._metadata == checkpoint['state_dict']._metadata
    assert list(state_dict) == list(checkpoint['state_dict'])
    for name, ref in checkpoint['state_dict'].items():
        assert torch.equal(state_dict[name].reshape(-1).view(torch.uint8),
                           ref.reshape(-1).view(torch.uint8)), name
