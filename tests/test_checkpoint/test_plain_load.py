# Copyright (c) gap_mm contributors. All rights reserved.
"""Which checkpoints plain mmdet (no gap_mm) loads, and the command that
makes one it loads (gap_mm.checkpoint.plain_load_note)."""
import importlib.util
import os.path as osp
import subprocess
import sys

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer

from gap_mm.checkpoint import plain_load_note, publish_command
from gap_mm.prerun_checks import imports_gap_mm
from gap_mm.utils.safe_load import (globals_refused_without_gap_mm,
                                    pickled_globals)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TENSOR_GLOBALS = [
    'collections.OrderedDict', 'torch._utils._rebuild_tensor_v2',
    'torch.FloatStorage'
]


def _training_checkpoint(path: str) -> str:
    """What MMEngine's Runner writes, in small: weights, and a message hub
    with a HistoryBuffer of numpy values."""
    loss = HistoryBuffer()
    loss.update(1.5)
    state = {'linear.weight': torch.ones(2, 3)}
    torch.save(
        dict(
            meta=dict(epoch=1, seed=np.int64(0)),
            state_dict=state,
            message_hub=dict(log_scalars={'train/loss': loss})), path)
    return path


def test_a_training_checkpoint_is_refused_by_plain_torch(tmp_path):
    path = _training_checkpoint(str(tmp_path / 'epoch_1.pth'))
    assert set(TENSOR_GLOBALS) <= set(pickled_globals(path))
    refused = globals_refused_without_gap_mm(path)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in refused
    assert 'numpy.core.multiarray.scalar' in refused  # the np.int64
    # Python 2's name that protocol 2 writes, read as unpickling maps it
    assert 'builtins.getattr' in refused
    assert not any(n.startswith('torch.') for n in refused)
    note = plain_load_note(path)
    assert 'Weights only load failed' in note
    assert note.endswith(
        f'python tools/model_converters/publish_model.py {path} '
        f'{tmp_path}/epoch_1_published.pth')
    assert publish_command('w/iter_4') == (
        'python tools/model_converters/publish_model.py w/iter_4 '
        'w/iter_4_published.pth')
    # and plain torch, in a process without gap_mm, does refuse it
    proc = subprocess.run([
        sys.executable, '-c', 'import sys, torch\n'
        'try:\n    torch.load(sys.argv[1])\n'
        'except Exception as err:\n    print(str(err).splitlines()[0])\n'
        'print("gap_mm" in sys.modules)', path
    ],
                          capture_output=True,
                          text=True,
                          check=True)
    error, imported = proc.stdout.splitlines()
    assert error.startswith('Weights only load failed')
    assert imported == 'False'


def test_a_published_checkpoint_needs_nothing(tmp_path):
    raw = _training_checkpoint(str(tmp_path / 'epoch_1.pth'))
    spec = importlib.util.spec_from_file_location(
        'publish_model',
        osp.join(ROOT, 'tools', 'model_converters', 'publish_model.py'))
    publish = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(publish)
    out = str(tmp_path / 'published.pth')
    assert publish.main([raw, out]) == 0
    assert pickled_globals(out) == TENSOR_GLOBALS
    assert globals_refused_without_gap_mm(out) == []
    assert plain_load_note(out) is None


def test_what_is_not_inspected(tmp_path):
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    assert pickled_globals(str(text)) == []
    assert plain_load_note(str(text)) is None
    assert plain_load_note(str(tmp_path / 'missing.pth')) is None
    assert plain_load_note('https://example.com/iter_4.pth') is None


def test_imports_gap_mm():
    def cfg(**kwargs):
        return Config(kwargs)

    assert imports_gap_mm(cfg(custom_imports=dict(imports=['gap_mm'])))
    assert imports_gap_mm(
        cfg(custom_imports=dict(imports=['x', 'gap_mm.testing.hooks'])))
    assert imports_gap_mm(cfg(custom_imports=dict(imports='gap_mm')))
    assert not imports_gap_mm(cfg(custom_imports=dict(imports=['gap_mm3d'])))
    assert not imports_gap_mm(cfg())
