# Copyright (c) gap_mm contributors. All rights reserved.
"""The runner reads the sparsity hooks' events from the structured record
they write (``<work_dir>/sparsity_events.jsonl``), not from log text:
written here by hand, so that the reader needs no hook."""
import json
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks', 'quality'))
import runner  # noqa: E402


def write_events(work_dir, *events, tail=''):
    path = osp.join(str(work_dir), runner.EVENTS_FILE)
    with open(path, 'w') as f:
        f.writelines(json.dumps(e) + '\n' for e in events)
        f.write(tail)
    return path


def gap(it, prune, grow):
    return {'iter': it, 'hook': 'GaPHook', 'event': 'gap', 'prune': prune,
            'grow': grow}


def test_gap_events_that_pruned_are_the_mask_changes(tmp_path):
    # iteration 0 only grows partition 0; 200 prunes it and grows 1; the
    # last prune (800) grows nothing: the fine-tune
    write_events(tmp_path, gap(0, [], [0]), gap(200, [0], [1]),
                 gap(400, [1], [2]), gap(800, [3], []))
    events = runner.read_events(str(tmp_path))
    assert [e['iter'] for e in events] == [0, 200, 400, 800]
    assert runner.mask_events(events) == [200, 400, 800]
    assert runner.event_summary(events) == {}


def test_a_resumed_run_repeats_events_and_one_is_kept(tmp_path):
    # killed after iteration 400, resumed from the checkpoint at 200: the
    # hook records 400 again; the killed write left half a line
    write_events(
        tmp_path,
        gap(200, [0], [1]),
        gap(400, [1], [2]),
        gap(400, [1], [2]),
        gap(600, [2], [3]),
        tail='{"iter": 8')
    events = runner.read_events(str(tmp_path))
    assert [e['iter'] for e in events] == [200, 400, 600]
    assert runner.mask_events(events) == [200, 400, 600]


def test_other_methods_change_masks_at_every_event_but_the_summary(
        tmp_path):
    write_events(
        tmp_path,
        {'iter': 100, 'hook': 'GMPHook', 'event': 'prune', 'sparsity': 0.4},
        {'iter': 100, 'hook': 'RigLHook', 'event': 'update', 'moved': 12},
        {'iter': 300, 'hook': 'SCSHook', 'event': 'freeze'},
        {'iter': 500, 'hook': 'SCSHook', 'event': 'summary',
         'values': {'train_flops': 0.62}},
        # the same kind from another hook at the same iteration is not a
        # repeat
        {'iter': 300, 'hook': 'GRegHook', 'event': 'freeze'},
        ['not', 'an', 'event'],
        {'hook': 'GMPHook', 'event': 'prune'},
    )
    events = runner.read_events(str(tmp_path))
    assert [(e['iter'], e['hook']) for e in events] == [
        (100, 'GMPHook'), (100, 'RigLHook'), (300, 'SCSHook'),
        (500, 'SCSHook'), (300, 'GRegHook')]
    assert runner.mask_events(events) == [100, 300]
    assert runner.event_summary(events) == {'train_flops': 0.62}


def test_no_file_no_events(tmp_path):
    assert runner.read_events(str(tmp_path)) == []
    assert runner.mask_events([]) == []


def test_loss_effects_at_the_recorded_events(tmp_path):
    write_events(tmp_path, gap(0, [], [0]), gap(50, [0], [1]),
                 gap(100, [1], []))
    losses = [[i, 1.0] for i in range(10, 51, 10)]
    losses += [[60, 1.6], [70, 1.2], [80, 0.9], [90, 0.8], [100, 0.8],
               [110, 1.2], [120, 0.95]]
    effects = runner.event_effects(
        losses, runner.mask_events(runner.read_events(str(tmp_path))))
    assert effects == [
        dict(iter=50, before_loss=1.0, after_loss=1.6, jump=0.6,
             recovery=30),
        # the mean over (50, 100], the peak over (100, 130]
        dict(iter=100, before_loss=1.06, after_loss=1.2, jump=0.14,
             recovery=20),
    ]


def test_summary_values_join_the_record_under_their_own_names(tmp_path):
    write_events(
        tmp_path,
        {'iter': 2000, 'hook': 'SCSHook', 'event': 'summary',
         'values': {'train_flops': 0.5}},
        {'iter': 2000, 'hook': 'OtherHook', 'event': 'summary',
         'values': {'kept_channels': 10}})
    record = {'id': 'det-x-s0', 'value': 0.6}
    runner.merge_summary(record,
                         runner.event_summary(
                             runner.read_events(str(tmp_path))))
    assert record == {'id': 'det-x-s0', 'value': 0.6, 'train_flops': 0.5,
                      'kept_channels': 10}
    # a summary never overwrites what the runner measured
    with pytest.raises(runner.CellFailed,
                       match=r"det-x-s0: the summary .* names \['value'\]"):
        runner.merge_summary(record, {'value': 1.0})
    assert record['value'] == 0.6
