# Copyright (c) gap_mm contributors. All rights reserved.
import sys

import pytest
from mmengine.config import Config

import gap_mm  # noqa: F401  (registers the hooks the checks look up)
from gap_mm.errors import GaPConfigError
from gap_mm.engine.gap_variables import (changed_top_level_keys,
                                         resolve_gap_variables)
from gap_mm.prerun_checks import check_gap_hook_options, merge_cfg_options


def _cfg(**extra):
    return Config(
        dict(
            gap_sparsity=0.8,
            gap_distribution='uniform',
            gap_period=200,
            custom_hooks=[dict(type='GaPHook'),
                          dict(type='EMAHook')],
            **extra))


def test_unset_hook_options_take_the_variables():
    cfg = _cfg()
    given = dict(sparsity=None, distribution=None, pattern=None)
    assert resolve_gap_variables(
        cfg, given, changed=[]) == dict(
            sparsity=0.8, distribution='uniform')
    cfg.merge_from_dict(dict(gap_sparsity=0.9, gap_pattern='2:4'))
    assert resolve_gap_variables(
        cfg, given, changed=['gap_sparsity', 'gap_pattern']) == dict(
            sparsity=0.9, distribution='uniform', pattern='2:4')


def test_explicit_hook_option_wins_unless_the_variable_was_changed():
    cfg = _cfg()
    given = dict(sparsity=0.5, distribution=None, pattern=None)
    # the file itself sets both: the hook's explicit value stands
    assert resolve_gap_variables(
        cfg, given, changed=[]) == dict(distribution='uniform')
    # a command-line gap_sparsity that cannot reach the explicit option
    cfg.merge_from_dict(dict(gap_sparsity=0.9))
    with pytest.raises(
            GaPConfigError,
            match=r'gap_sparsity=0.9 was set after the config was read, but '
            r'GaPHook is given sparsity=0.5 explicitly.*custom_hooks\.'
            r'<index>\.sparsity=\.\.\.'):
        resolve_gap_variables(cfg, given, changed=['gap_sparsity'])
    # ... unless it agrees with it
    given['sparsity'] = 0.9
    assert resolve_gap_variables(
        cfg, given, changed=['gap_sparsity']) == dict(distribution='uniform')


@pytest.mark.parametrize('key, message', [
    ('gap_sparsty', "--cfg-options gap_sparsty: .* Did you mean "
     "'gap_sparsity'"),
    ('gap_period', '--cfg-options gap_period: only gap_sparsity, '
     'gap_distribution, gap_pattern reach the sparsity hooks'),
])
def test_unknown_gap_variable_is_an_error(key, message):
    cfg = _cfg()
    with pytest.raises(GaPConfigError, match=message):
        merge_cfg_options(cfg, {key: 0.9, 'gap_sparsity': 0.95})
    # nothing was merged, not even the valid key given with it
    assert cfg.gap_sparsity == 0.8
    with pytest.raises(GaPConfigError, match=message):
        resolve_gap_variables(
            cfg, dict(sparsity=None), changed=[key, 'gap_sparsity'])


def test_changed_keys_are_found_by_reading_the_file_again(tmp_path):
    path = tmp_path / 'cfg.py'
    path.write_text(
        'gap_sparsity = 0.8\ngap_period = 200\nmodel = dict(a=1)\n')
    cfg = Config.fromfile(str(path))
    assert changed_top_level_keys(cfg) == []
    # what mmdet's tools/train.py does with --cfg-options
    cfg.merge_from_dict({'gap_sparsity': 0.9, 'model.a': 2, 'gap_x': 1})
    assert sorted(
        changed_top_level_keys(cfg)) == ['gap_sparsity', 'gap_x', 'model']
    assert changed_top_level_keys(Config(dict(a=1))) is None


def test_unknown_hook_option_names_the_closest():
    cfg = _cfg()
    cfg.custom_hooks[0]['partitons'] = 4
    with pytest.raises(
            GaPConfigError,
            match="GaPHook has no option 'partitons'. Did you "
            "mean 'partitions'"):
        check_gap_hook_options(cfg)
    # other hooks are not checked
    cfg = _cfg()
    cfg.custom_hooks[1]['whatever'] = 1
    check_gap_hook_options(cfg)


def test_unknown_changes_keep_the_explicit_option_with_a_warning(tmp_path):
    # A config file inside the work dir may be the Runner's own dump of the
    # merged config: what changed cannot be told there.
    from unittest import mock
    path = tmp_path / 'cfg.py'
    path.write_text('gap_sparsity = 0.9\n')
    cfg = Config.fromfile(str(path))
    assert changed_top_level_keys(cfg, work_dir=str(tmp_path)) is None
    assert changed_top_level_keys(cfg, work_dir=str(tmp_path / 'x')) == []
    with mock.patch('gap_mm.engine.gap_variables.print_log') as log:
        assert resolve_gap_variables(
            cfg, dict(sparsity=0.5), work_dir=str(tmp_path)) == {}
    message = log.call_args[0][0]
    assert "explicit sparsity=0.5, not the config's gap_sparsity=0.9" in \
        message
    # known to be unchanged: the explicit option stands silently
    with mock.patch('gap_mm.engine.gap_variables.print_log') as log:
        assert resolve_gap_variables(cfg, dict(sparsity=0.5),
                                     changed=[]) == {}
    log.assert_not_called()


def test_custom_imports_given_as_an_option_are_imported(
        tmp_path, monkeypatch):
    (tmp_path / 'gap_mm_probe_module.py').write_text('IMPORTED = True\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, 'gap_mm_probe_module', raising=False)
    cfg = Config(dict(custom_hooks=[]))
    merge_cfg_options(
        cfg, {'custom_imports': dict(imports=['gap_mm_probe_module'])})
    assert sys.modules['gap_mm_probe_module'].IMPORTED
    cfg = Config(dict(custom_hooks=[]))
    with pytest.raises(ImportError, match='gap_mm_no_such_module'):
        merge_cfg_options(
            cfg, {'custom_imports.imports': ['gap_mm_no_such_module']})
