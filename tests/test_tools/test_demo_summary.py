# Copyright (c) gap_mm contributors. All rights reserved.
"""The demo's summary: GaP's bbox mAP beside the sparsity and the dense
twin's bbox mAP, measured or recorded."""
import json
import os.path as osp
import subprocess
import sys

import torch

from gap_mm.checkpoint import write_state
from gap_mm.sparsity import pack_mask

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'misc', 'demo_summary.py')


def _test_dir(path, value):
    run = path / '20260101_000000'
    run.mkdir(parents=True)
    (run / '20260101_000000.json').write_text(
        json.dumps({
            'coco/bbox_mAP': value,
            'coco/bbox_mAP_50': value + 0.1
        }) + '\n')
    return str(path)


def _checkpoint(path, masked_value=0.0):
    weight = torch.ones(4, 5)
    keep = torch.ones(4, 5, dtype=torch.bool)
    keep[:, :4] = False  # 80% pruned
    weight[~keep] = masked_value
    ckpt = dict(state_dict={'conv.weight': weight, 'bn.bias': torch.ones(2)})
    write_state(
        ckpt,
        hook='GaPHook',
        step=10,
        by_epoch=False,
        sparsifier=dict(masks={'conv.weight': pack_mask(keep)}),
        dense_partitions=[])
    torch.save(ckpt, path)
    return str(path)


def _run(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)],
                          capture_output=True,
                          text=True)


def test_summary_with_recorded_and_measured_dense_twin(tmp_path):
    ckpt = _checkpoint(tmp_path / 'iter_10.pth')
    test_dir = _test_dir(tmp_path / 'test', 0.589)
    cells = tmp_path / 'results' / 'full' / 'cells'
    cells.mkdir(parents=True)
    (cells / 'det-dense-s0.json').write_text(
        json.dumps(dict(value=0.58, date='2026-12-01', commit='abc1234')))
    out = _run(ckpt, test_dir, '--results', tmp_path / 'results')
    assert out.returncode == 0, out.stderr
    assert 'bbox mAP (val, CocoMetric)    : 0.589' in out.stdout
    assert 'sparsity of the pruned layers : 80.00% of 20 weights' in out.stdout
    assert ('dense twin bbox mAP           : 0.580 (recorded by '
            'benchmarks/quality/run_grid.py full, 2026-12-01, commit '
            'abc1234)') in out.stdout
    assert 'GaP - dense                   : +0.9 points' in out.stdout
    # measured here wins over the record
    out = _run(ckpt, test_dir, '--results', tmp_path / 'results',
               '--dense-test-dir', _test_dir(tmp_path / 'dense', 0.6))
    assert '0.600 (trained and evaluated by this run)' in out.stdout
    assert '-1.1 points' in out.stdout
    # no record, no measurement: says how to get one
    out = _run(ckpt, test_dir, '--results', tmp_path / 'none')
    assert 'not measured: DEMO_DENSE=1 bash scripts/demo.sh' in out.stdout


def test_summary_refuses_weights_that_disagree_with_the_masks(tmp_path):
    ckpt = _checkpoint(tmp_path / 'bad.pth', masked_value=0.5)
    out = _run(ckpt, _test_dir(tmp_path / 'test', 0.5))
    assert out.returncode != 0
    assert "masked weights are not 0 in ['conv.weight']" in out.stderr
    out = _run(tmp_path / 'missing.pth', tmp_path)
    assert out.returncode != 0 and 'does not exist' in out.stderr
