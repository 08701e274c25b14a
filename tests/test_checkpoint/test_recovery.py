# Copyright (c) gap_mm contributors. All rights reserved.
"""Which checkpoint a run starts from when some are truncated, empty or
missing (gap_mm.checkpoint.recovery)."""
import os

import pytest
import torch
from mmengine.config import Config

from gap_mm.checkpoint import (CheckpointReadError, check_checkpoint_file,
                               checkpoint_problem, find_resumable_checkpoint,
                               prepare_checkpoint_loading)


def _save(path, step):
    torch.save(
        dict(meta=dict(iter=step), state_dict=dict(w=torch.randn(64, 64))),
        str(path))
    return str(path)


def _truncate(path, keep=0.5):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])
    return path


def _last(work_dir, text):
    (work_dir / 'last_checkpoint').write_text(text)


def test_problems(tmp_path):
    good = _save(tmp_path / 'good.pth', 1)
    assert checkpoint_problem(good) is None
    assert 'is truncated' in checkpoint_problem(
        _truncate(_save(tmp_path / 'half.pth', 1)))
    # even 99% of the bytes lack the central directory written last
    assert 'is truncated' in checkpoint_problem(
        _truncate(_save(tmp_path / 'most.pth', 1), keep=0.99))
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    assert checkpoint_problem(str(empty)) == 'is empty (0 bytes)'
    text = tmp_path / 'text.pth'
    text.write_text('hello')
    assert 'is not a PyTorch checkpoint' in checkpoint_problem(str(text))
    assert checkpoint_problem(str(tmp_path / 'none.pth')) == 'does not exist'
    # a flipped byte inside the tensor data: the CRC-32 catches it
    flipped = _save(tmp_path / 'flipped.pth', 1)
    data = bytearray(open(flipped, 'rb').read())
    data[len(data) // 2] ^= 0xFF
    open(flipped, 'wb').write(bytes(data))
    assert 'is damaged' in checkpoint_problem(flipped)
    assert checkpoint_problem(flipped, verify_crc=False) is None
    assert checkpoint_problem('https://example.com/x.pth') is None


def test_check_checkpoint_file_names_file_and_problem(tmp_path):
    half = _truncate(_save(tmp_path / 'iter_4.pth', 4))
    with pytest.raises(CheckpointReadError) as info:
        check_checkpoint_file(half, '--resume')
    message = str(info.value)
    assert message.startswith(f'--resume {half} is truncated')
    assert '\n' not in message


def test_auto_resume_skips_truncated_newest(tmp_path):
    iter_2 = _save(tmp_path / 'iter_2.pth', 2)
    iter_4 = _truncate(_save(tmp_path / 'iter_4.pth', 4))
    _last(tmp_path, iter_4)
    assert find_resumable_checkpoint(str(tmp_path)) == iter_2
    # a later complete file beats an older one named nowhere
    iter_6 = _save(tmp_path / 'iter_6.pth', 6)
    assert find_resumable_checkpoint(str(tmp_path)) == iter_6
    # last_checkpoint naming a complete file wins, as in MMEngine
    _last(tmp_path, iter_2)
    assert find_resumable_checkpoint(str(tmp_path)) == iter_2


@pytest.mark.parametrize('last', ['', 'gone', None])
def test_auto_resume_empty_dangling_or_no_last_checkpoint(tmp_path, last):
    iter_2 = _save(tmp_path / 'iter_2.pth', 2)
    _save(tmp_path / 'best_toy_mse_iter_3.pth', 3)  # no optimizer: skipped
    (tmp_path / 'iter_4.pth').write_bytes(b'')
    if last is not None:
        _last(tmp_path, last and str(tmp_path / last))
    assert find_resumable_checkpoint(str(tmp_path)) == iter_2


def test_auto_resume_nothing_complete_stops(tmp_path):
    """The reported loss: iter_20.pth deleted, iter_40.pth partial."""
    partial = _truncate(_save(tmp_path / 'iter_40.pth', 40))
    _last(tmp_path, str(tmp_path / 'iter_20.pth'))
    with pytest.raises(CheckpointReadError) as info:
        find_resumable_checkpoint(str(tmp_path))
    message = str(info.value)
    assert 'iter_20.pth' in message and 'does not exist' in message
    assert f'{partial} is truncated' in message


def test_auto_resume_fresh_work_dir(tmp_path):
    assert find_resumable_checkpoint(str(tmp_path)) is None
    assert find_resumable_checkpoint(str(tmp_path / 'not_yet')) is None


def test_prepare_checkpoint_loading(tmp_path):
    iter_2 = _save(tmp_path / 'iter_2.pth', 2)
    half = _truncate(_save(tmp_path / 'iter_4.pth', 4))
    _last(tmp_path, half)

    cfg = Config(dict(work_dir=str(tmp_path), load_from='ignored'))
    prepare_checkpoint_loading(cfg, 'auto')
    assert cfg.resume is True and cfg.load_from == iter_2

    cfg = Config(dict(work_dir=str(tmp_path), resume=True, load_from=None))
    prepare_checkpoint_loading(cfg, None)  # resume=True in the config
    assert cfg.load_from == iter_2

    cfg = Config(dict(work_dir=str(tmp_path)))
    with pytest.raises(CheckpointReadError, match=f'--resume {half} is'):
        prepare_checkpoint_loading(cfg, half)

    cfg = Config(dict(work_dir=str(tmp_path), load_from=half))
    with pytest.raises(CheckpointReadError, match=f'load_from {half} is'):
        prepare_checkpoint_loading(cfg, None)

    cfg = Config(dict(work_dir=str(tmp_path), load_from=iter_2))
    prepare_checkpoint_loading(cfg, None)
    assert not cfg.get('resume') and cfg.load_from == iter_2
    os.remove(iter_2)
