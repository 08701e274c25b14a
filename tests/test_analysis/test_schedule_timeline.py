# Copyright (c) gap_mm contributors. All rights reserved.
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config
from PIL import Image

from gap_mm.analysis import (Event, TimelineError, build_timeline,
                             schedule_from_config, training_length)
from gap_mm.schedules import CyclicGaPSchedule, ScheduleError

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / 'tools' / 'analysis_tools' / 'gap_schedule.py'

# K=3 partitions, T=2, R=2 rounds after 1 sparse warm-up iteration, in a
# 16-iteration run: the fine-tune is the last 3 iterations.
ITER_CONFIG = """
train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters})
custom_hooks = [
    dict(type='GaPHook', sparsity=0.8, partitions=3,
         schedule=dict(type='cyclic', period=2, num_rounds=2, begin=1))
]
"""
# K=2 regex groups, an epoch schedule in an epoch loop.
EPOCH_CONFIG = """
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=10)
custom_hooks = [
    dict(type='GaPHook', partitions=[r'^backbone\\.', [r'^neck\\.',
         r'^head\\.']],
         schedule=dict(type='cyclic', period=2, num_rounds=2,
                       by_epoch={by_epoch}))
]
"""


def _tool():
    spec = importlib.util.spec_from_file_location('gap_schedule_tool', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(tmp_path: Path, text: str, name: str = 'cfg.py') -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_timeline_matches_hand_written_expectation(tmp_path, capsys):
    cfg_path = _config(tmp_path, ITER_CONFIG.format(max_iters=16))
    png = tmp_path / 'timeline.png'
    assert _tool().main([str(cfg_path), '--out-png', str(png)]) == 0
    stdout = capsys.readouterr().out

    cfg = Config.fromfile(str(cfg_path))
    schedule, _ = schedule_from_config(cfg)
    max_steps, _ = training_length(cfg, schedule)
    timeline = build_timeline(schedule, max_steps)
    segments = [(s.start, s.end, sorted(s.dense), s.phase, s.round)
                for s in timeline.segments]
    assert segments == [
        (0, 1, [], 'sparse', -1),  # warm-up
        (1, 3, [0], 'grow', 0),
        (3, 5, [1], 'grow', 0),
        (5, 7, [2], 'grow', 0),
        (7, 9, [0], 'grow', 1),
        (9, 11, [1], 'grow', 1),
        (11, 13, [2], 'grow', 1),
        (13, 16, [], 'finetune', -1),
    ]
    # A prune of partition k at the end of each of its dense segments.
    assert timeline.prune_events() == [
        Event(3, 0, 'prune'),
        Event(5, 1, 'prune'),
        Event(7, 2, 'prune'),
        Event(9, 0, 'prune'),
        Event(11, 1, 'prune'),
        Event(13, 2, 'prune')
    ]
    assert [e.step for e in timeline.grow_events()] == [1, 3, 5, 7, 9, 11]
    assert timeline.finetune_start == 13

    # The segments agree with the schedule functions at every step.
    reference = CyclicGaPSchedule(
        num_partitions=3, period=2, num_rounds=2, begin=1)
    for seg in timeline.segments:
        for t in range(seg.start, seg.end):
            assert seg.dense == reference.dense_partitions(t)
            assert seg.phase == reference.phase(t)
            assert seg.round == reference.round_at(t)

    # The terminal table.
    lines = stdout.splitlines()
    table = lines[
        lines.index(next(line
                         for line in lines if line.startswith('start'))) + 2:]
    rows = [[c.strip() for c in line.split('|')] for line in table[:8]]
    assert rows[0] == ['0', '1', '-', 'sparse', '-', '']
    assert rows[1] == ['1', '3', 'p0', 'grow', '0', 'prune p0']
    assert rows[6] == ['11', '13', 'p2', 'grow', '1', 'prune p2']
    assert rows[7] == ['13', '16', '-', 'finetune', '-', '']
    assert ('6 prune events: p0@3, p1@5, p2@7, p0@9, p1@11, p2@13' in stdout)
    assert 'fine-tune (all masks fixed): from 13 to 16 (3 iterations)' \
        in stdout

    data = png.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 10_000
    with Image.open(png) as image:
        assert image.width > 400


def test_epoch_schedule_with_regex_partitions(tmp_path, capsys):
    cfg = _config(tmp_path, EPOCH_CONFIG.format(by_epoch=True))
    assert _tool().main([str(cfg)]) == 0
    stdout = capsys.readouterr().out
    assert 'training length: train_cfg.max_epochs = 10' in stdout
    assert '4 prune events: p0@2, p1@4, p0@6, p1@8' in stdout
    assert 'from 8 to 10 (2 epochs)' in stdout


def test_iteration_schedule_in_epoch_loop(tmp_path, capsys):
    cfg = _config(tmp_path, EPOCH_CONFIG.format(by_epoch=False))
    tool = _tool()
    assert tool.main([str(cfg)]) == 1
    assert '--iters-per-epoch' in capsys.readouterr().err

    png = tmp_path / 'ipe.png'
    assert tool.main(
        [str(cfg), '--iters-per-epoch', '3', '--out-png',
         str(png)]) == 0
    stdout = capsys.readouterr().out
    assert 'max_epochs 10 x 3 iterations per epoch = 30' in stdout
    assert 'from 8 to 30 (22 iterations)' in stdout
    assert png.stat().st_size > 10_000


def test_cfg_options_reach_the_schedule(tmp_path, capsys):
    cfg = _config(tmp_path, ITER_CONFIG.format(max_iters=16))
    assert _tool().main(
        [str(cfg), '--cfg-options', 'custom_hooks.0.schedule.period=1']) == 0
    assert 'from 7 to 16 (9 iterations)' in capsys.readouterr().out


def test_config_errors(tmp_path):
    no_hook = Config(dict(train_cfg=dict(max_iters=4), custom_hooks=[]))
    with pytest.raises(TimelineError, match='no GaPHook'):
        schedule_from_config(no_hook)
    bad = Config(
        dict(
            train_cfg=dict(max_iters=4),
            custom_hooks=[
                dict(
                    type='GaPHook',
                    schedule=dict(type='cyclic', period=0, num_rounds=1))
            ]))
    with pytest.raises(ScheduleError, match='period must be an int >= 1'):
        schedule_from_config(bad)


def test_overlong_schedule_exits_1_with_the_training_error(tmp_path):
    # 1 + 3 x 2 x 2 = 13 iterations of rounds in a 10-iteration run.
    cfg = _config(tmp_path, ITER_CONFIG.format(max_iters=10))
    with pytest.raises(ScheduleError) as info:
        CyclicGaPSchedule(
            num_partitions=3, period=2, num_rounds=2,
            begin=1).check_fits(10)  # what GaPHook raises
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(REPO)] + [p for p in [env.get('PYTHONPATH')] if p])
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(cfg)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    assert result.returncode == 1
    assert f'error: {info.value}' in result.stderr
    assert 'Traceback' not in result.stderr
    assert result.stdout == ''
