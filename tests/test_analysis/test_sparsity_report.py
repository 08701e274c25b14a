# Copyright (c) gap_mm contributors. All rights reserved.
import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from mmengine.registry import MODELS
from PIL import Image
from torch import nn

from gap_mm.analysis import ReportError, compute_report, load_checkpoint
from gap_mm.sparsity import pack_mask
from gap_mm.testing import GaPToyModel

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / 'tools' / 'analysis_tools' / 'sparsity_report.py'

# GaPToyModel: conv 8x1x3 (24), fc1 16x64 (1024), fc2 16x16 (256) and
# head 1x16 (16) weights; 1393 parameters with biases and the batch norm.
# The GaPHook excludes the head; partitions=2 splits the rest by parameter
# count into [conv, fc1] and [fc2].
GAP_CONFIG = """
default_scope = 'mmengine'
model = dict(type='GaPToyModel')
custom_hooks = [
    dict(type='GaPHook', sparsity=0.5, partitions=2, exclude=[r'^head\\.'],
         schedule=dict(type='cyclic', period=2, num_rounds=1))
]
"""
PLAIN_CONFIG = """
default_scope = 'mmengine'
model = dict(type='GaPToyModel')
"""


def _tool():
    spec = importlib.util.spec_from_file_location('sparsity_report_tool',
                                                  SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def toy_registered():
    MODELS.register_module(module=GaPToyModel, force=True)
    yield
    MODELS._module_dict.pop('GaPToyModel', None)


def _known_model(fc2_zero_rows: int = 0) -> nn.Module:
    """All parameters 1, except known zeros (some of them -0.0)."""
    model = GaPToyModel()
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(1.0)
        conv = model.conv.weight.view(-1)
        conv[:3] = 0.0
        conv[3:6] = -0.0  # a zero too
        model.fc1.weight[:12] = 0  # 12 rows of 64: 768 zeros
        model.fc2.weight[:fc2_zero_rows] = 0
        model.fc2.bias[:4] = 0  # not prunable, counts in the model total
    return model


def _save(path: Path, model: nn.Module, gap: bool = True) -> Path:
    ckpt = dict(meta=dict(iter=8), state_dict=model.state_dict())
    if gap:
        names = ['conv.weight', 'fc1.weight', 'fc2.weight']
        params = dict(model.named_parameters())
        ckpt['gap_state'] = dict(
            version=1,
            sparsifier=dict(
                masks={n: pack_mask(params[n] != 0)
                       for n in names},
                # Not the config's partitions: the checkpoint's win.
                partitions=[['conv.weight'], ['fc1.weight', 'fc2.weight']]),
            step=8,
            by_epoch=False,
            dense_partitions=[])
    torch.save(ckpt, path)
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    assert len(data) > 10_000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width > 400 and image.height > 200


def test_report_exact_counts_and_outputs(tmp_path, toy_registered, capsys):
    cfg = _write(tmp_path / 'gap_cfg.py', GAP_CONFIG)
    ckpt = _save(tmp_path / 'iter_8.pth', _known_model())
    out = dict(
        json=tmp_path / 'r.json',
        csv=tmp_path / 'r.csv',
        png=tmp_path / 'r.png')
    rc = _tool().main([
        str(cfg),
        str(ckpt), '--out-json',
        str(out['json']), '--out-csv',
        str(out['csv']), '--out-png',
        str(out['png'])
    ])
    stdout = capsys.readouterr().out
    assert rc == 0

    data = json.loads(out['json'].read_text())
    report = data['reports'][0]
    assert report['label'] == 'iter_8.pth'
    assert report['partition_source'] == 'checkpoint'
    rows = [(r['name'], r['shape'], r['numel'], r['nonzero'], r['partition'])
            for r in report['layers']]
    assert rows == [
        ('conv.weight', [8, 1, 3], 24, 18, 0),
        ('fc1.weight', [16, 64], 1024, 256, 1),
        ('fc2.weight', [16, 16], 256, 256, 1),
    ]
    assert [r['sparsity']
            for r in report['layers']] == pytest.approx([0.25, 0.75, 0.0])
    assert report['prunable'] == dict(
        numel=1304, nonzero=530, sparsity=pytest.approx(774 / 1304))
    assert report['model'] == dict(
        numel=1393,
        nonzero=1393 - 6 - 768 - 4,
        sparsity=pytest.approx(778 / 1393))
    assert [(p['partition'], p['layers'], p['numel'], p['nonzero'])
            for p in report['partitions']] == [(0, 1, 24, 18),
                                               (1, 2, 1280, 512)]

    # The terminal table: a line per layer and the totals.
    lines = stdout.splitlines()
    fc1 = next(line for line in lines if line.startswith('fc1.weight'))
    assert [c.strip() for c in fc1.split('|')
            ] == ['fc1.weight', '16x64', '1024', '256', '75.00%', '1']
    total = next(line for line in lines if line.startswith('prunable total'))
    assert [c.strip() for c in total.split('|')
            ][2:5] == ['1304', '530', f'{100 * 774 / 1304:.2f}%']
    model_total = next(line for line in lines if line.startswith('model'))
    assert [c.strip() for c in model_total.split('|')
            ][2:5] == ['1393', '615', f'{100 * 778 / 1393:.2f}%']
    assert 'head.weight' not in stdout  # excluded by the GaPHook

    with open(out['csv'], newline='') as f:
        csv_rows = list(csv.DictReader(f))
    assert [r['name'] for r in csv_rows] == [
        'conv.weight', 'fc1.weight', 'fc2.weight', 'partition 0 total',
        'partition 1 total', 'prunable total', 'model total'
    ]
    assert csv_rows[1]['shape'] == '16x64'
    assert (csv_rows[1]['numel'], csv_rows[1]['nonzero'],
            csv_rows[1]['partition']) == ('1024', '256', '1')
    assert float(csv_rows[1]['sparsity']) == pytest.approx(0.75)
    assert (csv_rows[-1]['numel'], csv_rows[-1]['nonzero']) == ('1393', '615')
    _assert_png(out['png'])


def test_partitions_from_config_or_none(tmp_path, toy_registered, capsys):
    ckpt = _save(tmp_path / 'dense.pth', _known_model(), gap=False)
    tool = _tool()

    # No gap_state: the partitions of the config's GaPHook.
    gap_cfg = _write(tmp_path / 'gap_cfg.py', GAP_CONFIG)
    out = tmp_path / 'a.json'
    assert tool.main([str(gap_cfg), str(ckpt), '--out-json', str(out)]) == 0
    report = json.loads(out.read_text())['reports'][0]
    assert report['partition_source'] == 'config'
    assert [r['partition'] for r in report['layers']] == [0, 0, 1]
    assert 'partition 0 (2 layers)' in capsys.readouterr().out

    # No GaPHook and no gap_state: every Conv/Linear weight, partition '-'.
    plain_cfg = _write(tmp_path / 'plain_cfg.py', PLAIN_CONFIG)
    out = tmp_path / 'b.json'
    png = tmp_path / 'b.png'
    assert tool.main([
        str(plain_cfg),
        str(ckpt), '--out-json',
        str(out), '--out-png',
        str(png)
    ]) == 0
    report = json.loads(out.read_text())['reports'][0]
    assert report['partition_source'] == 'none'
    assert [(r['name'], r['nonzero'], r['partition'])
            for r in report['layers']] == [('conv.weight', 18, '-'),
                                           ('fc1.weight', 256, '-'),
                                           ('fc2.weight', 256, '-'),
                                           ('head.weight', 16, '-')]
    assert report['prunable']['numel'] == 1320
    assert report['model']['nonzero'] == 615
    stdout = capsys.readouterr().out
    assert 'partition 0' not in stdout  # no per-partition totals
    _assert_png(png)


def test_compare_two_checkpoints(tmp_path, toy_registered, capsys):
    cfg = _write(tmp_path / 'gap_cfg.py', GAP_CONFIG)
    a = _save(tmp_path / 'a.pth', _known_model())
    b = _save(tmp_path / 'b.pth', _known_model(fc2_zero_rows=8))
    out = dict(
        json=tmp_path / 'c.json',
        csv=tmp_path / 'c.csv',
        png=tmp_path / 'c.png')
    rc = _tool().main([
        str(cfg),
        str(a), '--compare',
        str(b), '--labels', 'before', 'after', '--out-json',
        str(out['json']), '--out-csv',
        str(out['csv']), '--out-png',
        str(out['png'])
    ])
    stdout = capsys.readouterr().out
    assert rc == 0
    header = stdout.splitlines()[2]
    assert 'sparsity before' in header and 'sparsity after' in header
    fc2 = next(line for line in stdout.splitlines()
               if line.startswith('fc2.weight'))
    assert [c.strip() for c in fc2.split('|')][4:6] == ['0.00%', '50.00%']

    reports = json.loads(out['json'].read_text())['reports']
    assert [r['label'] for r in reports] == ['before', 'after']
    assert [r['prunable']['nonzero'] for r in reports] == [530, 530 - 128]
    with open(out['csv'], newline='') as f:
        rows = {r['name']: r for r in csv.DictReader(f)}
    assert (rows['fc2.weight']['nonzero'],
            rows['fc2.weight']['nonzero_b']) == ('256', '128')
    assert float(rows['fc2.weight']['sparsity_b']) == pytest.approx(0.5)
    _assert_png(out['png'])


def test_clear_errors(tmp_path, toy_registered, capsys):
    cfg = _write(tmp_path / 'gap_cfg.py', GAP_CONFIG)
    tool = _tool()

    assert tool.main([str(cfg), str(tmp_path / 'missing.pth')]) == 1
    assert 'missing.pth does not exist' in capsys.readouterr().err

    not_ckpt = _write(tmp_path / 'notes.pth', 'not a checkpoint\n')
    assert tool.main([str(cfg), str(not_ckpt)]) == 1
    assert 'is not a PyTorch checkpoint' in capsys.readouterr().err

    no_state = tmp_path / 'no_state.pth'
    torch.save(dict(meta=dict(epoch=1)), no_state)
    assert tool.main([str(cfg), str(no_state)]) == 1
    assert 'has no "state_dict"' in capsys.readouterr().err

    sd = _known_model().state_dict()
    sd.pop('fc2.weight')
    sd['extra.weight'] = torch.zeros(2)
    sd['fc1.weight'] = torch.zeros(3, 3)
    bad = tmp_path / 'bad.pth'
    torch.save(dict(state_dict=sd), bad)
    assert tool.main([str(cfg), str(bad)]) == 1
    err = capsys.readouterr().err
    assert 'does not match the model' in err
    assert 'fc2.weight' in err and 'extra.weight' in err
    assert 'fc1.weight ([3, 3] in the checkpoint, [16, 64] in the model)' \
        in err
    assert 'Traceback' not in err

    good = _save(tmp_path / 'good.pth', _known_model())
    assert tool.main([str(cfg), str(good), '--labels', 'a', 'b']) == 1
    assert '--labels needs 1 label' in capsys.readouterr().err


def test_compute_report_on_a_plain_module():
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 3))
    sd = {k: torch.ones_like(v) for k, v in model.state_dict().items()}
    sd['0.weight'][0] = 0  # 18 of 72
    report = compute_report(model, {f'module.{k}': v for k, v in sd.items()})
    assert [(r['name'], r['numel'], r['nonzero'], r['partition'])
            for r in report['layers']] == [('0.weight', 72, 54, '-'),
                                           ('3.weight', 12, 12, '-')]
    assert report['model'] == dict(
        numel=91, nonzero=73, sparsity=pytest.approx(18 / 91))
    with pytest.raises(
            ReportError, match=r'1 keys are not in the model: '
            r'\[extra\]'):
        compute_report(model, dict(sd, extra=torch.zeros(1)))


def test_load_checkpoint_accepts_bare_state_dict(tmp_path):
    path = tmp_path / 'bare.pth'
    torch.save({'w': torch.zeros(2)}, path)
    state_dict, gap_state = load_checkpoint(str(path))
    assert list(state_dict) == ['w'] and gap_state is None
