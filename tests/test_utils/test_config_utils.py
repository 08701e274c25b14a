# Copyright (c) gap_mm contributors. All rights reserved.
import pytest
from mmengine.config import Config

from gap_mm.errors import GaPConfigError
from gap_mm.utils import check_gap_hook_options, propagate_gap_variables


def _cfg(**extra):
    return Config(
        dict(
            gap_sparsity=0.8,
            gap_period=200,
            custom_hooks=[
                dict(type='GaPHook', sparsity=0.8, distribution='uniform'),
                dict(type='EMAHook')
            ],
            **extra))


def test_variables_reach_every_gap_hook_only_when_given():
    cfg = _cfg()
    cfg.merge_from_dict(dict(gap_sparsity=0.9, gap_distribution='global'))
    propagate_gap_variables(cfg, ['gap_sparsity', 'gap_distribution'])
    assert cfg.custom_hooks[0].sparsity == 0.9
    assert cfg.custom_hooks[0].distribution == 'global'
    assert cfg.custom_hooks[1] == dict(type='EMAHook')
    # An explicit hook option given on the command line is not overwritten.
    cfg = _cfg()
    cfg.merge_from_dict({'custom_hooks.0.sparsity': 0.95})
    propagate_gap_variables(cfg, ['custom_hooks.0.sparsity'])
    assert cfg.custom_hooks[0].sparsity == 0.95


@pytest.mark.parametrize('key, message', [
    ('gap_sparsty', "--cfg-options gap_sparsty: .* Did you mean "
     "'gap_sparsity'"),
    ('gap_period', '--cfg-options gap_period: only gap_sparsity, '
     'gap_distribution, gap_pattern reach the GaPHook'),
])
def test_unknown_gap_variable_is_an_error(key, message):
    cfg = _cfg()
    cfg.merge_from_dict({key: 0.9, 'gap_sparsity': 0.95})
    with pytest.raises(GaPConfigError, match=message):
        propagate_gap_variables(cfg, [key, 'gap_sparsity'])
    # nothing was propagated, not even the valid key given with it
    assert cfg.custom_hooks[0].sparsity == 0.8


def test_unknown_hook_option_names_the_closest():
    cfg = _cfg()
    cfg.custom_hooks[0]['partitons'] = 4
    with pytest.raises(GaPConfigError,
                       match="no option 'partitons'. Did you mean "
                       "'partitions'"):
        check_gap_hook_options(cfg)
