# Copyright (c) gap_mm contributors. All rights reserved.
from collections import OrderedDict

import numpy as np
import pytest
import torch

from gap_mm.checkpoint import (CheckpointStateError, read_state,
                               verify_masked_zero)
from gap_mm.export.checkpoint_io import check_masks, dropped_keys, to_jsonable
from gap_mm.sparsity.packing import pack_mask


def _masked_weight():
    weight = torch.randn(4, 6)
    keep = torch.rand(4, 6) > 0.5
    weight[~keep] = 0.0
    weight[~keep & (torch.arange(24).reshape(4, 6) % 2 == 0)] = -0.0
    checkpoint = dict(
        state_dict={'w': weight},
        gap_state=dict(
            version=1, sparsifier=dict(masks={'w': pack_mask(keep)}), step=1))
    return weight, keep, checkpoint


def test_verify_masked_zero():
    """The export's mask check, now :mod:`gap_mm.checkpoint`'s."""
    weight, keep, checkpoint = _masked_weight()
    state_dict = {'w': weight, 'b': torch.ones(4)}
    state = read_state(checkpoint)
    report = verify_masked_zero(state_dict, state)
    assert report == {
        'w': dict(numel=24, masked=int((~keep).sum()), nonzero_masked=0)
    }

    dirty = weight.clone()
    dirty[~keep] = torch.tensor(float('nan'))
    report = verify_masked_zero({'w': dirty}, state)
    assert report['w']['nonzero_masked'] == int((~keep).sum())
    assert verify_masked_zero(state_dict, read_state({})) == {}
    with pytest.raises(ValueError, match='not in the state_dict'):
        verify_masked_zero({'b': weight}, state)
    with pytest.raises(ValueError, match='shape'):
        verify_masked_zero({'w': weight.t()}, state)


def test_check_masks(capsys):
    weight, keep, checkpoint = _masked_weight()
    report = check_masks({'w': weight}, checkpoint, allow_nonzero=False)
    assert report['w']['nonzero_masked'] == 0
    assert 'verified: every weight pruned by the 1 GaP masks is 0' in (
        capsys.readouterr().out)
    assert check_masks({'w': weight}, {}, allow_nonzero=False) is None
    assert 'no GaP masks' in capsys.readouterr().out

    dirty = weight.clone()
    dirty[~keep] = 0.5
    with pytest.raises(SystemExit, match='--allow-nonzero-masked') as err:
        check_masks({'w': dirty}, checkpoint, allow_nonzero=False)
    assert str(err.value).startswith('error: ') and '\n' not in str(err.value)
    report = check_masks({'w': dirty}, checkpoint, allow_nonzero=True)
    assert report['w']['nonzero_masked'] == int((~keep).sum())
    assert 'warning: ' in capsys.readouterr().out

    with pytest.raises(SystemExit, match='do not match.*shape'):
        check_masks({'w': weight.t()}, checkpoint, allow_nonzero=False)
    checkpoint['gap_state']['version'] = 9
    with pytest.raises(SystemExit, match="^error: ckpt.pth: unsupported"):
        check_masks({'w': weight}, checkpoint, False, where='ckpt.pth')
    assert issubclass(CheckpointStateError, ValueError)


def test_dropped_keys_and_to_jsonable():
    checkpoint = dict(meta={}, state_dict={}, optimizer={}, gap_state={})
    assert dropped_keys(checkpoint) == ['optimizer', 'gap_state']
    assert dropped_keys({'w': torch.zeros(1)}) == []  # a bare state_dict
    meta = OrderedDict(
        a=np.float64(0.5),
        b=(1, {2}),
        c=torch.arange(3),
        d=torch.zeros(5000),
        e=object)
    data = to_jsonable(meta)
    assert data['a'] == 0.5 and data['b'] == [1, [2]]
    assert data['c'] == [0, 1, 2] and data['d'].startswith('tensor(')
    assert data['e'] == repr(object)
