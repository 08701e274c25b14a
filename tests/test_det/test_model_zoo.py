# Copyright (c) gap_mm contributors. All rights reserved.
"""The model zoo: GaP at its default options on nine mmdet families.

Each family is mmdet's own config through ``mmdet::`` plus the lines a user
adds (``gap_mm.testing.zoo.user_config``), made tiny for the CPU
(``gap_mm.testing.zoo.make_tiny``) and trained in this process for 2 epochs
of 3 iterations on generated shapes, once per family (module-scoped). Then:
the GaP events happen at their iterations; every pruned tensor keeps
exactly ``n - round(0.8 n)`` weights; no large weight stays dense without
a reason named in the start table; frozen parameters and the heads' output
layers stay dense; the EMA model of YOLOX and RTMDet is as sparse as the
model; mmdet's test loop evaluates the checkpoint; a run resumed from the
first epoch's checkpoint ends bit for bit where the uninterrupted one did;
the published checkpoints load with ``torch.load(weights_only=True)`` and
evaluate in a process that never imports gap_mm.

The table of ``docs/en/supported_models.md`` is computed from these runs;
after a change that moves it, rewrite it with::

    GAP_MM_WRITE_ZOO_PAGE=1 python -m pytest tests/test_det/test_model_zoo.py
"""
import copy
import importlib.util
import json
import os
import os.path as osp
import re
import runpy
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.runner import Runner

import gap_mm  # noqa: F401
import gap_mm.testing.hooks  # noqa: F401  (SeedEveryStepHook)
from gap_mm.checkpoint import plain_load_note
from gap_mm.testing import zoo
from gap_mm.testing.e2e import (checkpoint_masks, load_checkpoint,
                                logged_metrics)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAGE = osp.join(ROOT, 'docs', 'en', 'supported_models.md')
WRITE_PAGE = 'GAP_MM_WRITE_ZOO_PAGE'
SPARSITY = 0.8  # the hook's default without gap_sparsity
#: A dense weight above this share of the prunable weights is "large".
LARGE = 0.01
FAMILIES = {f.key: f for f in zoo.FAMILIES}
#: Layer types as the tests and the page name them (a subclass, such as
#: the out_proj of nn.MultiheadAttention, by its base).
KINDS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
         nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
         nn.MultiheadAttention, nn.Embedding)
#: The GaP events of every run: the initial masks, then each of the 4
#: partitions grown for one iteration and pruned back.
EVENTS = [(0, 'init', None, None), (0, 'gap', [], [0]), (1, 'gap', [0], [1]),
          (2, 'gap', [1], [2]), (3, 'gap', [2], [3]), (4, 'gap', [3], [])]


def _load_tool(path: str):
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0], osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class ParamInfo:
    """What the tests need to know of one parameter of the trained model."""
    shape: tuple
    requires_grad: bool
    module_type: str


@dataclass
class ZooRun:
    """One family's runs: trained, resumed, tested; the model is gone."""
    family: zoo.Family
    folder: str
    params: Dict[str, ParamInfo] = field(default_factory=dict)
    masks: Dict[str, torch.Tensor] = field(default_factory=dict)
    start_table: str = ''
    events: List[tuple] = field(default_factory=list)
    metrics: Dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> str:
        return osp.join(self.folder, 'train', f'epoch_{zoo.MAX_EPOCHS}.pth')

    @property
    def tiny_config(self) -> str:
        return osp.join(self.folder, f'{self.family.key}_tiny.py')

    @property
    def resumed(self) -> str:
        return osp.join(self.folder, 'resume', f'epoch_{zoo.MAX_EPOCHS}.pth')


_USER_CONFIGS: Dict[str, Config] = {}


def _tiny_config(family: zoo.Family, folder: str, data_root: str,
                 work: str) -> Config:
    """The family's user config (read once), made tiny, for a run in
    ``folder/work``."""
    path = osp.join(folder, f'{family.key}.py')
    if path not in _USER_CONFIGS:
        with open(path, 'w') as f:
            f.write(zoo.user_config(family))
        _USER_CONFIGS[path] = Config.fromfile(path)
    cfg = copy.deepcopy(_USER_CONFIGS[path])
    zoo.make_tiny(cfg, family, data_root, osp.join(folder, work))
    # a unique name per Runner: MMEngine shares loggers and message hubs
    # between runners of one name
    cfg.experiment_name = f'zoo_{family.key}_{work}_{time.time_ns()}'
    return cfg


def _with_reseeding(cfg: Config) -> Config:
    """Add SeedEveryStepHook: the random draws of a step depend on the
    step only, so a resumed run can match the uninterrupted one."""
    cfg.custom_hooks = list(cfg.custom_hooks) + [
        dict(type='SeedEveryStepHook')
    ]
    return cfg


def _log_file(work_dir: str) -> str:
    """The text log of the (last) run in ``work_dir``."""
    return sorted(
        os.path.join(r, f) for r, _, fs in os.walk(work_dir) for f in fs
        if f.endswith('.log'))[-1]


def _start_table(work_dir: str) -> str:
    """The log record that follows 'masks at the start of training:'."""
    text = open(_log_file(work_dir), encoding='utf-8').read().splitlines()
    start = next(i for i, line in enumerate(text)
                 if 'masks at the start of training:' in line)
    end = start + 1
    while end < len(text) and not re.match(r'\d{4}/\d\d/\d\d ', text[end]):
        end += 1
    return '\n'.join(text[start:end])


def _train(family: zoo.Family, folder: str, data_root: str) -> ZooRun:
    run = ZooRun(family, folder)
    cfg = _with_reseeding(_tiny_config(family, folder, data_root, 'train'))
    runner = Runner.from_cfg(cfg)
    runner.train()
    for name, param in runner.model.named_parameters():
        module = runner.model.get_submodule(name.rpartition('.')[0])
        kind = next((k.__name__ for k in KINDS if isinstance(module, k)),
                    type(module).__name__)
        run.params[name] = ParamInfo(
            tuple(param.shape), param.requires_grad, kind)
    del runner
    with open(osp.join(folder, 'train', 'sparsity_events.jsonl')) as f:
        for line in f:
            event = json.loads(line)
            run.events.append((event['iter'], event['event'],
                               event.get('prune'), event.get('grow')))
    run.masks = checkpoint_masks(load_checkpoint(run.final))
    run.start_table = _start_table(osp.join(folder, 'train'))

    # --resume from the first epoch's checkpoint, in a fresh folder
    cfg = _with_reseeding(_tiny_config(family, folder, data_root, 'resume'))
    cfg.resume = True
    cfg.load_from = osp.join(folder, 'train', 'epoch_1.pth')
    Runner.from_cfg(cfg).train()

    # mmdet's test loop on the checkpoint, as tools/test.py runs it
    cfg = _tiny_config(family, folder, data_root, 'test')
    cfg.load_from = run.final
    cfg.dump(run.tiny_config)
    run.metrics = dict(Runner.from_cfg(cfg).test())
    return run


#: A family's run, or the error that stopped it (raised again, not rerun).
_RUNS: Dict[str, object] = {}


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> str:
    """The generated shapes at 64 px: 6 train and 2 val images."""
    root = str(tmp_path_factory.mktemp('zoo_data'))
    gen = _load_tool('tools/dataset_converters/gen_synthetic_coco.py')
    gen.generate_dataset(
        root,
        num_train=zoo.NUM_TRAIN,
        num_val=zoo.NUM_VAL,
        img_size=zoo.IMG_SIZE,
        seed=0)
    return root


@pytest.fixture(scope='module')
def zoo_run(tmp_path_factory, data_root):
    """``zoo_run(key)``: the family's :class:`ZooRun`, run once."""

    def get(key: str) -> ZooRun:
        if key not in _RUNS:
            folder = str(tmp_path_factory.mktemp(key))
            try:
                _RUNS[key] = _train(FAMILIES[key], folder, data_root)
            except Exception as err:  # noqa: BLE001  (fail once, not 6x)
                _RUNS[key] = err
        if isinstance(_RUNS[key], Exception):
            raise _RUNS[key]
        return _RUNS[key]

    return get


def _module(name: str) -> str:
    return name.rpartition('.')[0]


def _expected_kept(name: str, numel: int) -> List[int]:
    """Kept weights at the default uniform 80%: per tensor, or per q, k
    and v block of a packed attention projection."""
    if name.endswith('in_proj_weight'):
        return [numel // 3 - round(SPARSITY * (numel // 3))] * 3
    return [numel - round(SPARSITY * numel)]


# ---------------------------------------------------------------- per family
@pytest.mark.parametrize('key', list(FAMILIES))
def test_events_and_exact_count(zoo_run, key):
    run = zoo_run(key)
    assert run.events == EVENTS
    state = load_checkpoint(run.final)['state_dict']
    total = pruned = 0
    for name, keep in run.masks.items():
        weight = state[name]
        assert keep.shape == weight.shape, name
        assert (weight[~keep] == 0).all(), name
        blocks = keep.reshape(3, -1) if name.endswith(
            'in_proj_weight') else keep.reshape(1, -1)
        kept = [int(b.sum()) for b in blocks]
        assert kept == _expected_kept(name, keep.numel()), name
        total += keep.numel()
        pruned += keep.numel() - sum(kept)
    assert f'{100 * pruned / total:.2f}%' == '80.00%'


@pytest.mark.parametrize('key', list(FAMILIES))
def test_no_large_weight_silently_dense(zoo_run, key):
    """A weight the user means to prune is pruned: whatever stays dense and
    holds over 1% of the prunable weights is frozen, an output layer or an
    embedding, and the start table names it."""
    run = zoo_run(key)
    prunable = sum(k.numel() for k in run.masks.values())
    output = re.compile(run.family.output)
    offenders = []
    for name, info in run.params.items():
        numel = int(torch.Size(info.shape).numel())
        if name in run.masks or len(info.shape) < 2 or \
                numel <= LARGE * prunable:
            continue
        reason_ok = (not info.requires_grad
                     or output.search(_module(name))
                     or info.module_type == 'Embedding')
        named = _module(name) in run.start_table
        if not (reason_ok and named):
            offenders.append((name, info.module_type, numel))
    assert offenders == [], (
        f'dense weights over {LARGE:.0%} of the {prunable} prunable ones, '
        f'not frozen, output or embedding, or not named in the start table')


@pytest.mark.parametrize('key', list(FAMILIES))
def test_frozen_and_output_layers_stay_dense(zoo_run, key):
    """mmdet's frozen stages (``frozen_stages=1``) never get a gradient, so
    they could never regrow; the output layers are left out by default."""
    run = zoo_run(key)
    output = re.compile(run.family.output)
    frozen = [n for n, i in run.params.items() if not i.requires_grad]
    outputs = [
        n for n, i in run.params.items()
        if output.search(_module(n)) and len(i.shape) >= 2
    ]
    assert outputs, f'{run.family.output!r} matches no layer'
    assert [n for n in frozen if n in run.masks] == []
    assert [n for n in outputs if n in run.masks] == []
    # each named in the start table: an output layer by itself, a frozen
    # layer by itself or by its stage ('backbone.layer1')
    for name in outputs:
        assert _module(name) in run.start_table, name
    for name in frozen:
        if len(run.params[name].shape) > 1:
            stage = '.'.join(name.split('.')[:2])
            assert _module(name) in run.start_table or \
                stage in run.start_table, name


@pytest.mark.parametrize('key',
                         [k for k, f in FAMILIES.items() if f.ema])
def test_ema_model_as_sparse(zoo_run, key):
    """EMAHook's averaged model, which the checkpoint's ``state_dict``
    holds (and ``ema_state_dict`` the trained one), is zero wherever the
    masks prune and non-zero wherever they keep."""
    run = zoo_run(key)
    ckpt = load_checkpoint(run.final)
    differ = 0
    for name, keep in run.masks.items():
        averaged = ckpt['state_dict'][name]
        trained = ckpt['ema_state_dict'][f'module.{name}']
        differ += not torch.equal(averaged, trained)
        for weight in (averaged, trained):
            assert (weight[~keep] == 0).all(), name
            assert int((weight != 0).sum()) == int(keep.sum()), name
    assert differ > 0  # two models, not one saved twice


@pytest.mark.parametrize('key', list(FAMILIES))
def test_checkpoint_evaluates(zoo_run, key):
    run = zoo_run(key)
    for metric in run.family.metrics:
        value = run.metrics[f'coco/{metric}_mAP']
        assert 0.0 <= value <= 1.0, (metric, value)


@pytest.mark.parametrize('key', list(FAMILIES))
def test_resume_is_exact(zoo_run, key):
    """Resumed from epoch 1 (in the middle of the schedule, partition 3
    dense), epoch 2 ends with the uninterrupted run's weights, masks,
    optimizer state and EMA, bit for bit."""
    run = zoo_run(key)
    a, b = load_checkpoint(run.final), load_checkpoint(run.resumed)
    ma, mb = checkpoint_masks(a), checkpoint_masks(b)
    assert set(ma) == set(mb) == set(run.masks)
    for name in ma:
        assert torch.equal(ma[name], mb[name]), name
    for part in ('state_dict', 'ema_state_dict'):
        assert set(a.get(part, {})) == set(b.get(part, {})), part
        for name, value in a.get(part, {}).items():
            assert torch.equal(value, b[part][name]), (part, name)
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert set(sa) == set(sb)
    for index in sa:
        for slot, value in sa[index].items():
            assert torch.equal(value, sb[index][slot]), (index, slot)


def test_mmdet_test_tool_on_the_ssd_checkpoint(zoo_run, tmp_path,
                                               monkeypatch):
    """mmdet's packaged tools/test.py (run here, in this process) evaluates
    the GaP SSD checkpoint with the config the user trained it with
    (FixedSSDHead, gap_mm imported through ``custom_imports``)."""
    import mmdet
    run = zoo_run('ssd300')
    tool = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'test.py')
    monkeypatch.setattr(sys, 'argv', [
        tool, run.tiny_config, run.final, '--work-dir',
        str(tmp_path)
    ])
    runpy.run_path(tool, run_name='__main__')
    logged = logged_metrics(str(tmp_path), 'coco/bbox_mAP')
    assert logged['coco/bbox_mAP'] == run.metrics['coco/bbox_mAP']


def test_our_test_tool_on_a_training_checkpoint_with_the_upstream_config(
        zoo_run, tmp_path, monkeypatch):
    """gap_mm's tools/test.py with mmdet's config (no gap_mm in
    ``custom_imports``) evaluates the training checkpoint, and says that
    mmdet's own tools would refuse it and which command writes the file
    they load; training said so too, for its last checkpoint."""
    import mmengine.logging
    run = zoo_run('retinanet')
    note = ('python tools/model_converters/publish_model.py '
            f'{run.final} {run.final[:-len(".pth")]}_published.pth')
    log = open(_log_file(osp.join(run.folder, 'train')),
               encoding='utf-8').read()
    assert note in log
    cfg = Config.fromfile(run.tiny_config)
    for key in ('custom_imports', 'custom_hooks'):
        cfg.pop(key)
    cfg.optim_wrapper.type = 'OptimWrapper'
    cfg.dump(str(tmp_path / 'upstream.py'))
    printed = []
    real = mmengine.logging.print_log

    def record(msg, *args, **kwargs):
        printed.append(msg)
        return real(msg, *args, **kwargs)

    monkeypatch.setattr(mmengine.logging, 'print_log', record)
    monkeypatch.setattr(sys, 'argv', [
        'tools/test.py',
        str(tmp_path / 'upstream.py'), run.final, '--work-dir',
        str(tmp_path / 'test')
    ])
    runpy.run_path(osp.join(ROOT, 'tools', 'test.py'), run_name='__main__')
    assert [m for m in printed if 'publish_model.py' in m] == [
        plain_load_note(run.final)
    ]
    assert note in plain_load_note(run.final)
    logged = logged_metrics(str(tmp_path / 'test'), 'coco/bbox_mAP')
    assert logged['coco/bbox_mAP'] == run.metrics['coco/bbox_mAP']


def test_rtmdet_depthwise_and_shared_convs_are_pruned(zoo_run):
    """CSPNeXt's 5x5 depthwise convs are pruned like any conv, and the head
    convs that RTMDet shares between its 3 levels are one masked tensor,
    zero in the same places under all 3 names of the state_dict."""
    run = zoo_run('rtmdet_tiny')
    depthwise = [n for n, k in run.masks.items() if k.shape[1:] == (1, 5, 5)]
    # one CSPNeXt block (deepen_factor 0.167) in each of the 4 backbone
    # stages and the 4 CSP layers of the neck
    assert len(depthwise) == 8
    state = load_checkpoint(run.final)['state_dict']
    for branch in ('cls', 'reg'):
        name = f'bbox_head.{branch}_convs.0.0.conv.weight'
        assert name in run.masks
        for level in (1, 2):
            other = name.replace('convs.0.', f'convs.{level}.')
            assert other not in run.masks
            assert torch.equal(state[other], state[name])


def test_mask_rcnn_upsample_is_pruned(zoo_run):
    """The mask head's ConvTranspose2d upsample is a weight like any
    other."""
    run = zoo_run('mask_r_cnn')
    name = 'roi_head.mask_head.upsample.weight'
    assert run.params[name].module_type == 'ConvTranspose2d'
    assert name in run.masks, f'{name} stays dense'


def test_detr_full_size_state_dict_zeros():
    """mmdet's DETR R50 itself (built, not trained) at the default
    options: the zeros of the whole state_dict within a point of 80%."""
    from gap_mm.testing.config_check import build_gap_training
    cfg = Config.fromstring(
        zoo.user_config(FAMILIES['detr']), file_format='.py')
    cfg.model.backbone.init_cfg = None  # no downloads in tests
    model, _, hook, _ = build_gap_training(cfg, 'zoo_detr_full')
    state = model.state_dict()
    values = sum(v.numel() for v in state.values())
    zeros = sum(int((v == 0).sum()) for v in state.values())
    share = zeros / values
    assert hook.sparsity == SPARSITY
    assert abs(share - SPARSITY) <= 0.01, f'{share:.2%} zeros of {values}'


# ------------------------------------------------------- plain mmdet
PLAIN_SCRIPT = r"""
import json, pickle, sys
import torch
from mmengine.config import Config
from mmengine.runner import Runner
results = {}
for key, config, published, raw, work in json.loads(sys.argv[1]):
    # the training checkpoint: refused by torch's weights-only default
    try:
        torch.load(raw, map_location='cpu')
        refused = ''
    except pickle.UnpicklingError as err:
        refused = str(err).splitlines()[0]
    # the published one: loads with nothing allow-listed
    state = torch.load(published, map_location='cpu', weights_only=True)
    cfg = Config.fromfile(config, import_custom_modules=False)
    if cfg.model.get('bbox_head', {}).get('type') == 'FixedSSDHead':
        cfg.model.bbox_head.type = 'SSDHead'  # what plain mmdet has
    runner = Runner(
        model=cfg.model, work_dir=work, experiment_name=key,
        test_dataloader=cfg.test_dataloader,
        test_evaluator=cfg.test_evaluator, test_cfg=cfg.test_cfg,
        load_from=published, default_scope='mmdet',
        env_cfg=dict(dist_cfg=dict(backend='gloo')))
    try:
        metrics = {k: float(v) for k, v in runner.test().items()}
        error = ''
    except AttributeError as err:
        metrics, error = {}, f'{type(err).__name__}: {err}'
    results[key] = dict(refused=refused, top=sorted(state),
                        keys=sorted(state['state_dict']),
                        metrics=metrics, error=error)
assert not any(m == 'gap_mm' or m.startswith(('gap_mm.', 'gap_mm3d'))
               for m in sys.modules), 'gap_mm was imported'
print('PLAIN_RESULTS', json.dumps(results))
"""


@pytest.fixture(scope='module')
def plain_results(zoo_run, tmp_path_factory) -> Dict[str, dict]:
    """Every family's checkpoint published with
    ``tools/model_converters/publish_model.py`` and evaluated by mmdet's
    test loop in one process that never imports gap_mm."""
    publish = _load_tool('tools/model_converters/publish_model.py')
    folder = tmp_path_factory.mktemp('plain')
    jobs = []
    for key in FAMILIES:
        run = zoo_run(key)
        out = str(folder / f'{key}_published.pth')
        assert publish.main([run.final, out]) == 0
        jobs.append([key, run.tiny_config, out, run.final,
                     str(folder / key)])
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH='')
    proc = subprocess.run(
        [sys.executable, '-c', PLAIN_SCRIPT, json.dumps(jobs)],
        cwd=str(folder),
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines()
                if x.startswith('PLAIN_RESULTS '))
    return json.loads(line[len('PLAIN_RESULTS '):])


def test_published_checkpoints_evaluate_without_gap_mm(
        zoo_run, plain_results):
    """Plain mmdet refuses the training checkpoint (torch loads weights
    only, and MMEngine's training state holds classes it does not allow)
    and evaluates the published one to the metrics gap_mm's run logged;
    SSD excepted, which mmdet 3.3.0 cannot predict with at all."""
    for key, result in plain_results.items():
        run = zoo_run(key)
        assert 'Weights only load failed' in result['refused'], key
        assert result['top'] == ['meta', 'state_dict'], key
        assert result['keys'] == sorted(
            load_checkpoint(run.final)['state_dict']), key
        if run.family.head_type == 'FixedSSDHead':
            assert result['error'] == ("AttributeError: 'SSDHead' object "
                                       "has no attribute 'loss_cls'")
            continue
        assert result['error'] == '', key
        for metric in run.family.metrics:
            name = f'coco/{metric}_mAP'
            assert result['metrics'][name] == pytest.approx(
                run.metrics[name], abs=1e-12), (key, name)


# ------------------------------------------------------------ the page
PAGE_BEGIN = '<!-- zoo:table:begin -->'
PAGE_END = '<!-- zoo:table:end -->'


def _collapse(names, depth: Optional[int] = None) -> str:
    """Module names, indices as ``*``, optionally cut to ``depth`` parts,
    in order, each once, as code."""
    out = []
    for name in names:
        parts = re.sub(r'\.\d+(?=\.|$)', '.*', name).split('.')
        short = '.'.join(parts[:depth] if depth else parts)
        if short not in out:
            out.append(short)
    return ', '.join(f'`{n}`' for n in out)


def page_row(run: ZooRun, plain: dict) -> List[str]:
    """One row of the supported-models table, from a family's runs."""
    family = run.family
    pruned_types = []
    parts = []
    for name in run.masks:
        kind = run.params[name].module_type
        if kind not in pruned_types:
            pruned_types.append(kind)
        part = name.split('.')[0]
        if part not in parts:
            parts.append(part)
    pruned = (f"{', '.join(sorted(pruned_types))} weights of "
              f"{', '.join(f'`{p}`' for p in parts)}")
    output = re.compile(family.output)
    groups: Dict[str, List[str]] = {}
    for name, info in run.params.items():
        if name in run.masks or len(info.shape) < 2:
            continue
        module = _module(name)
        if not info.requires_grad:
            why = 'frozen by the config (no gradient, could never regrow)'
        elif output.search(module):
            why = 'output layers'
        elif info.module_type == 'Embedding':
            why = 'embeddings'
        else:
            why = f'{info.module_type} `{name.rpartition(".")[2]}`'
        groups.setdefault(why, []).append(module)
    dense = '; '.join(
        f'{why}: {_collapse(mods, 2 if why.startswith("frozen") else None)}'
        for why, mods in groups.items()) or 'none'
    if plain['error']:
        evaluated = (f"mmdet's test loop with gap_mm imported; plain mmdet "
                     f"3.3.0 stops with `{plain['error']}`")
    else:
        evaluated = ("mmdet's test loop; plain mmdet (no gap_mm) on the "
                     'published checkpoint, same '
                     f"{' and '.join(family.metrics)} mAP")
    notes = [family.notes] if family.notes else []
    if family.ema:
        notes.append("EMAHook's averaged model as sparse as the model")
    return [
        family.name, f'`mmdet::{family.config}`', pruned, dense, evaluated,
        '; '.join(notes)
    ]


def render_table(rows: List[List[str]]) -> str:
    header = ['family', 'mmdet config', 'pruned (default options)',
              'stays dense (2-D and larger), and why', 'evaluated', 'notes']
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)


def test_supported_models_page(zoo_run, plain_results):
    rows = [page_row(zoo_run(k), plain_results[k]) for k in FAMILIES]
    table = render_table(rows)
    text = open(PAGE, encoding='utf-8').read()
    head, _, rest = text.partition(PAGE_BEGIN + '\n')
    _, _, tail = rest.partition(PAGE_END)
    assert head and tail, f'{PAGE} lacks {PAGE_BEGIN} ... {PAGE_END}'
    current = rest.partition(PAGE_END)[0].rstrip('\n')
    if os.environ.get(WRITE_PAGE):
        with open(PAGE, 'w', encoding='utf-8') as f:
            f.write(f'{head}{PAGE_BEGIN}\n{table}\n{PAGE_END}{tail}')
        current = table
    assert current == table, (
        f'{osp.relpath(PAGE, ROOT)} is out of date; rewrite it with '
        f'{WRITE_PAGE}=1 python -m pytest tests/test_det/test_model_zoo.py')
