# Copyright (c) gap_mm contributors. All rights reserved.
"""load_from and tools/test.py stop on a checkpoint of another model
(gap_mm.checkpoint.weights_match)."""
import pytest
import torch
import torch.nn as nn

from gap_mm.checkpoint import (CheckpointReadError, check_weights_match,
                               match_weights)


def _model():
    return nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))


def _save(tmp_path, name, state_dict):
    path = str(tmp_path / name)
    torch.save(dict(meta=dict(), state_dict=state_dict), path)
    return path


def test_same_model_matches_all(tmp_path):
    model = _model()
    path = _save(tmp_path, 'same.pth', _model().state_dict())
    result = check_weights_match(model, path, require_all=True)
    assert len(result.matched) == result.total == 9
    assert result.missing == result.mismatched == []


def test_module_prefix_is_stripped():
    model = _model()
    wrapped = {f'module.{k}': v for k, v in _model().state_dict().items()}
    assert len(match_weights(model, wrapped).matched) == 9


def test_other_model_stops_naming_counts(tmp_path):
    path = _save(tmp_path, 'other.pth', {'backbone.conv1.weight':
                                         torch.zeros(8, 3, 3, 3)})
    with pytest.raises(CheckpointReadError) as info:
        check_weights_match(_model(), path, 'load_from')
    message = str(info.value)
    assert message.startswith(f'load_from {path} holds 0 of the 9 tensors')
    assert '9 are missing (0.weight, 0.bias, 1.weight, ...)' in message


def test_new_head_is_fine_for_training_not_for_testing(tmp_path):
    state = _model().state_dict()
    state['2.weight'] = torch.zeros(5, 4)  # 5 classes instead of 3
    state['2.bias'] = torch.zeros(5)
    path = _save(tmp_path, 'head.pth', state)
    result = check_weights_match(_model(), path, 'load_from')
    assert len(result.matched) == 7
    assert result.mismatched == ['2.weight', '2.bias']
    with pytest.raises(CheckpointReadError,
                       match='holds 7 of the 9 tensors .*2 have another '
                       r'shape \(2.weight, 2.bias\)'):
        check_weights_match(_model(), path, 'checkpoint', require_all=True)


def test_few_matches_stop_training(tmp_path):
    state = {'0.weight': torch.zeros(4, 2), '0.bias': torch.zeros(4)}
    path = _save(tmp_path, 'few.pth', state)
    with pytest.raises(CheckpointReadError, match='at least 50%'):
        check_weights_match(_model(), path)
    assert len(check_weights_match(_model(), path,
                                   min_fraction=0.2).matched) == 2
    with pytest.raises(ValueError, match='got 2'):
        check_weights_match(_model(), path, min_fraction=2)
