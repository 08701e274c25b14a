# Copyright (c) gap_mm contributors. All rights reserved.
import pytest

from gap_mm.schedules import (CyclicGaPSchedule, ScheduleError, StaticSchedule,
                              build_schedule)


def test_cyclic_timeline_matches_hand_written_expectation():
    # K=3 partitions, T=2, R=2 rounds, after 1 sparse warm-up step,
    # then 3 steps of fine-tune: 1 + 12 + 3 = 16 steps.
    s = CyclicGaPSchedule(
        num_partitions=3, period=2, num_rounds=2, finetune=3, begin=1)
    expected = [
        None,  # warm-up, all sparse
        0,
        0,
        1,
        1,
        2,
        2,  # round 0
        0,
        0,
        1,
        1,
        2,
        2,  # round 1
        None,
        None,
        None
    ]  # fine-tune
    got = [next(iter(s.dense_partitions(t)), None) for t in range(16)]
    assert got == expected
    assert [s.phase(t) for t in (0, 1, 12, 13, 15)
            ] == ['sparse', 'grow', 'grow', 'finetune', 'finetune']
    assert [s.round_at(t)
            for t in (0, 1, 6, 7, 12, 13)] == [-1, 0, 0, 1, 1, -1]
    assert s.required_length() == 16
    assert s.finetune_start() == 13
    s.check_fits(16)
    s.check_fits(20)


def test_segments_cut_at_every_grow_and_prune():
    s = CyclicGaPSchedule(num_partitions=2, period=3, num_rounds=1)
    segs = s.segments(8)
    assert [(g.start, g.end, sorted(g.dense), g.phase)
            for g in segs] == [(0, 3, [0], 'grow'), (3, 6, [1], 'grow'),
                               (6, 8, [], 'finetune')]


def test_static_schedule_is_always_sparse():
    s = StaticSchedule(num_partitions=4)
    assert all(not s.dense_partitions(t) for t in range(50))
    s.check_fits(1)


def test_overlong_schedule_error_gives_the_numbers():
    s = CyclicGaPSchedule(
        num_partitions=4, period=100, num_rounds=2, finetune=200)
    with pytest.raises(ScheduleError) as info:
        s.check_fits(800)
    assert str(info.value).startswith(
        'The GaP schedule needs K 4 x R 2 x T 100 + finetune 200 = 1000 '
        'iterations, but the training run has only 800 iterations '
        '(train_cfg max_iters)')
    epochs = CyclicGaPSchedule(4, 3, 1, by_epoch=True)
    with pytest.raises(ScheduleError, match='12 epochs.*leaves no fine-tune'):
        epochs.check_fits(12)
    with pytest.raises(ScheduleError, match=r'max_epochs'):
        epochs.check_fits(11)


@pytest.mark.parametrize('cfg, message', [
    (dict(type='cyclic', period=0, num_rounds=1), 'period must be an int >= '
     '1, but got 0'),
    (dict(type='cyclic', period=2, num_rounds=1.5), 'num_rounds must be an '
     'int'),
    (dict(type='cyclic', period=2, num_rounds=1, finetune=-1), 'finetune'),
    (dict(type='cyclic', period=2), 'bad arguments for schedule'),
    (dict(type='linear'),
     "unknown schedule type 'linear'; valid types are .*'cyclic'"),
    (dict(period=3), "must be a dict with a 'type'"),
    (dict(type='cyclic', period=2, num_rounds=1,
          num_partitions=3), 'num_partitions=3 but the model is split into 4'),
    (dict(type='static', by_epoch='yes'), 'by_epoch must be a bool'),
])
def test_build_schedule_errors(cfg, message):
    with pytest.raises(ScheduleError, match=message):
        build_schedule(cfg, num_partitions=4)


def test_build_schedule_fills_num_partitions():
    s = build_schedule(dict(type='cyclic', period=5, num_rounds=2), 4)
    assert isinstance(s, CyclicGaPSchedule) and s.num_partitions == 4
    assert s.required_length() == 40


def test_a_registered_schedule_is_built_from_its_name():
    # A user's custom_imports module can add a schedule to the registry.
    from gap_mm.registry import SCHEDULES
    from gap_mm.schedules import StaticSchedule

    @SCHEDULES.register_module(name='test_dense_first', force=True)
    class DenseFirst(StaticSchedule):

        def dense_partitions(self, t, group=0):
            return frozenset({0}) if t == 0 else frozenset()

    try:
        s = build_schedule(dict(type='test_dense_first'), 3)
        assert isinstance(s, DenseFirst) and s.num_partitions == 3
        assert s.dense_partitions(0) == {0} and not s.dense_partitions(1)
    finally:
        SCHEDULES.module_dict.pop('test_dense_first')
    with pytest.raises(ScheduleError, match='unknown schedule type'):
        build_schedule(dict(type='test_dense_first'), 3)


def test_parallel_schedule_is_a_function_of_step_and_group():
    from gap_mm.schedules import ParallelGaPSchedule
    s = ParallelGaPSchedule(num_partitions=3, period=4, num_rounds=2)
    for group in range(3):
        assert [sorted(s.dense_partitions(t, group))
                for t in (0, 7, 8)] == [[group], [group], []]
    assert [t for t in range(12) if s.is_combine(t)] == [4, 8]
    assert [s.phase(t) for t in (0, 7, 8)] == ['grow', 'grow', 'finetune']
    assert s.finetune_start() == 8 and s.required_length() == 8
    s.check_fits(9)
    with pytest.raises(
            ScheduleError, match='leaves no fine-tune in a run '
            'of 8 iterations'):
        s.check_fits(8)
    with pytest.raises(ScheduleError, match='group 3 out of range'):
        s.dense_partitions(0, 3)
    built = build_schedule(dict(type='parallel', period=2, num_rounds=1), 2)
    assert isinstance(built, ParallelGaPSchedule)
