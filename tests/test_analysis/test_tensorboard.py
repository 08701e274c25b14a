# Copyright (c) gap_mm contributors. All rights reserved.
"""docs/en/user_guides/tensorboard.md: its config snippet puts the GaP
scalars into TensorBoard event files."""
import importlib.util
import re
import shlex
import sys
import uuid
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import DATASETS, MODELS
from mmengine.runner import Runner

import gap_mm  # noqa: F401  (registers GaPHook and GaPOptimWrapper)
from gap_mm.testing import GaPToyDataset, GaPToyModel

event_accumulator = pytest.importorskip(
    'tensorboard.backend.event_processing.event_accumulator')

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / 'docs' / 'en' / 'user_guides' / 'tensorboard.md'

# 6 iterations, K=2 ([conv, fc1] and [fc2, head]), T=2, R=1: partition 0 is
# dense for iterations 0-1, partition 1 for 2-3, then the fine-tune.
BASE_CONFIG = """
default_scope = 'mmengine'
model = dict(type='GaPToyModel')
train_dataloader = dict(
    dataset=dict(type='GaPToyDataset'),
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    batch_size=4,
    num_workers=0)
train_cfg = dict(by_epoch=False, max_iters=6)
optim_wrapper = dict(
    type='GaPOptimWrapper', optimizer=dict(type='SGD', lr=0.01))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False))
log_processor = dict(by_epoch=False)
custom_hooks = [
    dict(type='GaPHook', sparsity=0.75, partitions=2, print_table=False,
         schedule=dict(type='cyclic', period=2, num_rounds=1))
]
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends,
                  name='{name}')
"""


def _doc_snippets():
    return re.findall(r'```(\w+)\n(.*?)```', DOC.read_text(), re.S)


@pytest.fixture
def toy_registered():
    MODELS.register_module(module=GaPToyModel, force=True)
    DATASETS.register_module(module=GaPToyDataset, force=True)
    yield
    MODELS._module_dict.pop('GaPToyModel', None)
    DATASETS._module_dict.pop('GaPToyDataset', None)


def test_doc_snippet_writes_gap_scalars(tmp_path, toy_registered):
    snippet = next(code for lang, code in _doc_snippets()
                   if lang == 'python' and 'TensorboardVisBackend' in code)
    assert re.search(r"^_base_ = .*$", snippet, re.M)
    name = f'vis_{uuid.uuid4().hex[:8]}'
    (tmp_path / 'toy_base.py').write_text(BASE_CONFIG.replace('{name}', name))
    (tmp_path / 'toy_tb.py').write_text(
        re.sub(
            r"^_base_ = .*$", "_base_ = './toy_base.py'", snippet, flags=re.M))
    cfg = Config.fromfile(str(tmp_path / 'toy_tb.py'))
    assert cfg.visualizer.type == 'Visualizer'  # merged into the base's
    cfg.work_dir = str(tmp_path / 'work')
    cfg.experiment_name = name
    runner = Runner.from_cfg(cfg)
    runner.train()
    runner.visualizer.close()

    events = list((tmp_path / 'work').rglob('events.out.tfevents.*'))
    assert len(events) == 1 and events[0].parent.name == 'vis_data'
    acc = event_accumulator.EventAccumulator(
        str(events[0].parent), size_guidance={'scalars': 0})
    acc.Reload()
    tags = acc.Tags()['scalars']
    for tag in ('gap_sparsity', 'gap_sparsity_p0', 'gap_sparsity_p1',
                'gap_dense_partition', 'loss'):
        assert tag in tags, tags

    def series(tag):
        return [(e.step, e.value) for e in acc.Scalars(tag)]

    # Logged at step iteration + 1, with the masks of that step.
    assert series('gap_dense_partition') == [(1, 0), (2, 1), (3, 1), (4, -1),
                                             (5, -1), (6, -1)]
    # Prunable: 24 + 1024 weights in p0, 256 + 16 in p1; 75% kept sparse.
    dense_p0 = 1 - (1048 + 68) / 1320
    dense_p1 = 1 - (262 + 272) / 1320
    assert [s for s, _ in series('gap_sparsity')] == [1, 2, 3, 4, 5, 6]
    assert [v for _, v in series('gap_sparsity')] == pytest.approx(
        [dense_p0, dense_p1, dense_p1, 0.75, 0.75, 0.75], abs=1e-6)
    assert [v for _, v in series('gap_sparsity_p1')
            ] == pytest.approx([0.75, 0.0, 0.0, 0.75, 0.75, 0.75], abs=1e-6)


def test_doc_command_line_swaps_the_backend(monkeypatch):
    """The doc's command, parsed by our tools/train.py and merged into the
    config it names as tools/train.py merges it: TensorBoard replaces the
    base's only backend, and the visualizer stays mmdet's."""
    pytest.importorskip('mmdet')
    command = next(code for lang, code in _doc_snippets()
                   if lang == 'shell' and '--cfg-options' in code)
    argv = shlex.split(command.replace('\\\n', ' '))
    assert argv[:2] == ['python', 'tools/train.py']
    spec = importlib.util.spec_from_file_location(
        'gap_mm_train_tool', ROOT / 'tools' / 'train.py')
    train_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_tool)
    monkeypatch.setattr(sys, 'argv', argv[1:])
    monkeypatch.setenv('LOCAL_RANK', '0')  # parse_args exports it
    args = train_tool.parse_args()
    cfg = Config.fromfile(str(ROOT / args.config))
    assert [b.type for b in cfg.visualizer.vis_backends] == [
        'LocalVisBackend'
    ]
    train_tool.merge_cfg_options(cfg, args.cfg_options)
    assert cfg.visualizer.vis_backends == [dict(type='TensorboardVisBackend')]
    assert cfg.visualizer.type == 'DetLocalVisualizer'
