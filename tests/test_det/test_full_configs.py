# Copyright (c) gap_mm contributors. All rights reserved.
"""The full COCO configs load, build their model and hook, and train a step.

A broken full config must never reach users, yet these configs need COCO
and 8 GPUs to train; so the model, the GaPHook and the optimizer wrapper
are built from them exactly as the Runner would, and one iteration runs on
two small random images.
"""
import os.path as osp
from unittest import mock

import pytest
import torch
from mmengine.config import Config

import gap_mm  # noqa: F401
from gap_mm.errors import GaPConfigError
from gap_mm.sparsity import num_kept
from gap_mm.testing.config_check import build_gap_training

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
COCO = {
    'retinanet': 'retinanet_r50-fpn_8xb2-3x_coco.py',
    'faster_rcnn': 'faster-rcnn_r50-fpn_8xb2-3x_coco.py',
}
DEMO = 'retinanet_r18-fpn_1xb8-2k_synthetic-coco.py'
DEMO_GAP = f'gap/cgap_{DEMO}'
DEMO_DENSE = f'dense/dense_{DEMO}'


def _cfg(name):
    """A config by its path under configs/."""
    return Config.fromfile(osp.join(ROOT, 'configs', name))


def _batch(size=128, num_classes=80):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(
            torch.randint(
                0, 255, (3, size, size), generator=gen, dtype=torch.uint8))
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1.0, 1.0),
                pad_shape=(size, size)))
        xy = torch.rand(3, 2, generator=gen) * size * 0.5
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + 24 + xy / 2], 1),
            labels=torch.randint(0, num_classes, (3, ), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('name, dense_excluded', [
    ('gap_faster_rcnn.py', [
        'backbone.conv1.weight', 'rpn_head.rpn_cls.weight',
        'rpn_head.rpn_reg.weight', 'roi_head.bbox_head.fc_cls.weight',
        'roi_head.bbox_head.fc_reg.weight'
    ]),
    (f'gap/cgap_{COCO["retinanet"]}', [
        'backbone.conv1.weight', 'bbox_head.retina_cls.weight',
        'bbox_head.retina_reg.weight'
    ]),
])
def test_full_config_builds_and_trains_one_step(name, dense_excluded):
    cfg = _cfg(name)
    assert cfg.gap_sparsity == 0.8
    # --cfg-options gap_sparsity=0.9 gap_distribution=erk, merged as every
    # launcher merges it (mmdet's tools/train.py and mim included), reaches
    # the hook, which reads the variables at run time
    cfg.merge_from_dict(dict(gap_sparsity=0.9, gap_distribution='erk'))

    cfg.model.backbone.init_cfg = None  # no downloads in tests
    model, wrapper, hook, runner = build_gap_training(cfg, name)
    assert (hook.sparsity, hook.distribution) == (0.9, 'erk')
    sp = hook.sparsifier
    assert sp.num_partitions == 4
    for excluded in dense_excluded:
        assert excluded not in sp.params
    assert sp.dense_partitions == {0}  # partition 0 grown at epoch 0

    model.train()
    losses = model.train_step(_batch(), wrapper)
    assert all(torch.isfinite(v).all() for v in losses.values())
    hook.after_train_iter(runner, 0)
    total = kept = 0
    for row in sp.layer_stats():
        weight = sp.params[row['name']]
        if row['dense']:
            assert row['partition'] == 0
            continue
        keep = sp.keep_mask(row['name'])
        assert (weight[~keep] == 0).all()
        total += row['numel']
        kept += row['kept']
    # ERK keeps N - round(0.9 N) over all prunable weights, up to one
    # rounding per layer, and every layer keeps some; partition 0 regrew
    # after that first prune.
    all_numel = sum(p.numel() for p in sp.params.values())
    assert abs(sum(sp.num_keep.values()) - num_kept(all_numel, 0.9)) <= len(
        sp.names)
    assert min(sp.num_keep.values()) > 0
    assert kept == sum(sp.num_keep[n] for n in sp.names if sp.is_sparse(n))


@pytest.mark.parametrize('name, emptied', [
    ('gap_faster_rcnn.py', 'roi_head.bbox_head.shared_fcs.0.weight'),
    (f'gap/cgap_{COCO["retinanet"]}', 'neck.fpn_convs.3.conv.weight'),
])
def test_global_magnitude_that_empties_a_layer_is_an_error(name, emptied):
    # One threshold over freshly initialised layers follows their init
    # scales: at 80% it prunes every weight of these layers.
    cfg = _cfg(name)
    cfg.merge_from_dict(dict(gap_distribution='global'))
    cfg.model.backbone.init_cfg = None
    cfg.custom_hooks[0]['print_table'] = False
    with pytest.warns(UserWarning, match='removed every weight'), \
            pytest.raises(GaPConfigError,
                          match=f"would prune every weight of .*{emptied}.*"
                          "use distribution='erk'"):
        build_gap_training(cfg, f'{name}_global')


def _assert_erk_at(sp, sparsity):
    """ERK targets: N - round(s N) over all layers up to one rounding per
    layer, the narrowest layers denser than the widest."""
    total = sum(p.numel() for p in sp.params.values())
    assert abs(sum(sp.num_keep.values()) - num_kept(total, sparsity)) <= len(
        sp.names)
    density = {n: sp.num_keep[n] / sp.params[n].numel() for n in sp.names}
    widest = max(sp.names, key=lambda n: sp.params[n].numel())
    narrowest = min(sp.names, key=lambda n: sp.params[n].numel())
    assert density[narrowest] > density[widest]


@pytest.mark.parametrize('name, num_prunable', [
    (DEMO_GAP, 29),
    ('gap/cgap_faster-rcnn_r18-fpn_1xb8-2k_synthetic-coco.py', None),
])
def test_tiny_gap_config_builds_and_trains_one_step(name, num_prunable):
    # The small CPU detectors of the demo and the tests, on 160 px inputs.
    cfg = _cfg(name)
    model, wrapper, hook, runner = build_gap_training(cfg, name)
    sp = hook.sparsifier
    if num_prunable is not None:
        assert len(sp.names) == num_prunable
    assert sp.num_partitions == 4
    assert sp.dense_partitions == {0}
    model.train()
    losses = model.train_step(_batch(size=160, num_classes=6), wrapper)
    assert all(torch.isfinite(v).all() for v in losses.values())
    hook.after_train_iter(runner, 0)
    assert hook.distribution == 'erk'  # the demo's default
    _assert_erk_at(sp, 0.8)
    for row in sp.layer_stats():
        if row['dense']:
            assert row['partition'] == 0
        else:  # every sparse layer at exactly its ERK target
            assert row['kept'] == sp.num_keep[row['name']], row['name']
            keep = sp.keep_mask(row['name'])
            assert (sp.params[row['name']][~keep] == 0).all()


# The methods' configs for the demo detector: (config, hook, dense at
# start, masks random at start).
TINY_METHODS = [
    (f'gap/static_{DEMO}', 'GaPHook', False),
    (f'gap/static-random_{DEMO}', 'GaPHook', False),
    (f'gmp/gmp_{DEMO}', 'GMPHook', True),
    (f'rigl/rigl_{DEMO}', 'RigLHook', False),
    (f'set/set_{DEMO}', 'SETHook', False),
]


@pytest.mark.parametrize('name, hook_type, dense', TINY_METHODS)
def test_tiny_method_configs_train_one_step(name, hook_type, dense):
    cfg = _cfg(name)
    gap_cfg = _cfg(DEMO_GAP)
    model, wrapper, hook, runner = build_gap_training(cfg, name)
    assert type(hook).__name__ == hook_type
    # the same prunable set, recipe and budget as the GaP config
    assert hook.exclude == gap_cfg.custom_hooks[0].exclude
    assert cfg.train_cfg == gap_cfg.train_cfg
    assert cfg.param_scheduler == gap_cfg.param_scheduler
    assert cfg.optim_wrapper == gap_cfg.optim_wrapper
    sp = hook.sparsifier
    assert len(sp.names) == 29
    model.train()
    model.train_step(_batch(size=160, num_classes=6), wrapper)
    hook.after_train_iter(runner, 0)
    if not dense:
        _assert_erk_at(sp, 0.8)
    for row in sp.layer_stats():
        assert row['dense'] == dense, row['name']
        if not dense:
            assert row['kept'] == sp.num_keep[row['name']], row['name']
            keep = sp.keep_mask(row['name'])
            assert (sp.params[row['name']][~keep] == 0).all()


def test_dense_twin_is_the_gap_config_without_gap():
    dense = _cfg(DEMO_DENSE)
    gap = _cfg(DEMO_GAP)
    assert dense.custom_hooks == []
    assert dense.optim_wrapper.type == 'OptimWrapper'
    for key in ('model', 'train_cfg', 'param_scheduler', 'train_dataloader',
                'randomness'):
        assert dense[key] == gap[key], key
    assert dense.optim_wrapper.optimizer == gap.optim_wrapper.optimizer


CROWDED = 'faster-rcnn_r18-fpn_1xb8-2k_synthetic-coco-crowded.py'


@pytest.mark.parametrize('name, hook_type', [
    (f'gap/cgap_{CROWDED}', 'GaPHook'),
    (f'gap/static_{CROWDED}', 'GaPHook'),
    (f'set/set_{CROWDED}', 'SETHook'),
])
def test_crowded_task_configs_train_one_step(name, hook_type):
    # The second detection task: the demo's two-stage twin on 10 classes
    # with the demo's recipe and the same prunable set; each method's
    # settings are the demo's own.
    cfg, dense = _cfg(name), _cfg(f'dense/dense_{CROWDED}')
    twin = _cfg('gap/cgap_faster-rcnn_r18-fpn_1xb8-2k_synthetic-coco.py')
    demo_method = _cfg(name.replace(CROWDED, DEMO))
    for key in ('model', 'train_cfg', 'param_scheduler', 'train_dataloader',
                'randomness'):
        assert cfg[key] == dense[key], key
    assert cfg.model.roi_head.bbox_head.num_classes == 10
    assert len(cfg.train_dataloader.dataset.metainfo.classes) == 10
    assert cfg.train_dataloader.dataset.data_root != \
        twin.train_dataloader.dataset.data_root
    for key in ('train_cfg', 'param_scheduler', 'optim_wrapper'):
        assert cfg[key] == twin[key], key
    hook_cfg, demo_hook = cfg.custom_hooks[0], demo_method.custom_hooks[0]
    assert hook_cfg.type == demo_hook.type == hook_type
    for key in ('schedule', 'interval', 'end', 'drop_fraction'):
        assert hook_cfg.get(key) == demo_hook.get(key), key
    assert hook_cfg.exclude == twin.custom_hooks[0].exclude
    model, wrapper, hook, runner = build_gap_training(cfg, name)
    sp = hook.sparsifier
    assert len(sp.names) == 30
    model.train()
    losses = model.train_step(_batch(size=160, num_classes=10), wrapper)
    assert all(torch.isfinite(v).all() for v in losses.values())
    hook.after_train_iter(runner, 0)
    _assert_erk_at(sp, 0.8)


@pytest.mark.parametrize('method, model, hook_type',
                         [(method, model, hook)
                          for method, hook in (('gmp', 'GMPHook'),
                                               ('rigl', 'RigLHook'),
                                               ('set', 'SETHook'))
                          for model in COCO])
def test_full_method_configs_build(method, model, hook_type):
    name = f'{method}/{method}_{COCO[model]}'
    cfg = _cfg(name)
    base = _cfg(f'gap/cgap_{COCO[model]}')
    cfg.model.backbone.init_cfg = None  # no downloads in tests
    _, _, hook, _ = build_gap_training(cfg, name, iters_per_epoch=1000)
    assert type(hook).__name__ == hook_type
    assert hook.exclude == base.custom_hooks[0].exclude
    assert cfg.train_cfg == base.train_cfg
    if hook_type == 'GMPHook':
        assert (hook.schedule.begin, hook.schedule.end) == (1, 24)
    else:  # 2/3 of 36 epochs of 1000 iterations
        assert hook.schedule.end == 24000


@pytest.mark.parametrize('name, base_name, groups', [
    (f'pgap/pgap_{c}', f'gap/cgap_{c}', 4) for c in COCO.values()
] + [
    ('pgap/pgap_retinanet_r18-fpn_2xb8-2k_synthetic-coco.py', DEMO_GAP, 2),
])
def test_pgap_configs_fit_their_schedule(name, base_name, groups):
    # Training them needs a multiple of K processes (the tiny one runs in
    # test_coco_tiny_e2e and the quality grid); here: everything P-GaP
    # checks at the start of training that the config alone decides.
    from mmengine.registry import DATA_SAMPLERS, HOOKS, DefaultScope

    from gap_mm.engine.parallel_gap import (check_group_sampler,
                                            check_interval)
    from gap_mm.registry import build_registered
    from gap_mm.schedules import (SCHEDULES, ParallelGaPSchedule,
                                  ScheduleError)
    cfg = _cfg(name)
    base = _cfg(base_name)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        hook = HOOKS.build(cfg.custom_hooks[0])
    schedule = build_registered(
        SCHEDULES,
        hook.schedule_cfg,
        'schedule',
        ScheduleError,
        default_args=dict(num_partitions=groups))
    assert isinstance(schedule, ParallelGaPSchedule)
    assert len(hook.partitions) == groups
    assert hook.exclude == base.custom_hooks[0].exclude
    for key in ('model', 'optim_wrapper', 'param_scheduler'):
        assert cfg[key] == base[key], key
    assert cfg.train_cfg.get(
        'max_epochs', cfg.train_cfg.get('max_iters')) == base.train_cfg.get(
            'max_epochs', base.train_cfg.get('max_iters'))
    sampler_cfg = dict(cfg.train_dataloader.sampler)
    kind = sampler_cfg.pop('type')
    with mock.patch(
            'gap_mm.engine.samplers.group_sampler.get_dist_info',
            return_value=(0, 2 * groups)):
        sampler = DATA_SAMPLERS.get(kind)(list(range(16)), **sampler_cfg)
    check_group_sampler(schedule, sampler, cfg.train_dataloader.batch_size)
    check_interval(schedule, 'checkpoint',
                   cfg.default_hooks.checkpoint.interval)
    check_interval(schedule, 'val', cfg.train_cfg.val_interval)


@pytest.mark.parametrize('name', [
    f'greg/greg{v}{mode}_{DEMO}' for v in (1, 2) for mode in ('', '-filter')
])
def test_tiny_greg_configs_train_one_step_dense(name):
    cfg = _cfg(name)
    gap_cfg = _cfg(DEMO_GAP)
    # the dense baseline's last checkpoint, in its default work dir
    assert cfg.load_from == osp.join('work_dirs', f'dense_{DEMO[:-3]}',
                                     'iter_2000.pth')
    model, wrapper, hook, runner = build_gap_training(cfg, name)
    assert type(hook).__name__ == 'GRegHook'
    assert hook.schedule.variant == int(name[len('greg/greg')])
    assert hook.exclude == gap_cfg.custom_hooks[0].exclude
    assert cfg.train_cfg == gap_cfg.train_cfg
    assert cfg.optim_wrapper == gap_cfg.optim_wrapper
    sp = hook.sparsifier
    if '-filter' in name:
        assert hook.mode == 'filter' and hook.sparsity == 0.5
        # residual and FPN convs are left out, the rest are prunable
        assert 'backbone.layer1.0.conv2.weight' in hook.coupled
        assert 'backbone.layer2.0.downsample.0.weight' in hook.coupled
        assert 'neck.lateral_convs.0.conv.weight' in hook.coupled
        assert 'backbone.layer1.0.conv1.weight' in sp.params
        assert not set(hook.coupled) & set(sp.params)
    else:
        assert len(sp.names) == 29
    model.train()
    model.train_step(_batch(size=160, num_classes=6), wrapper)
    hook.after_train_iter(runner, 0)
    # dense until the prune, with the penalty on
    assert all(row['dense'] for row in sp.layer_stats())
    assert hook.penalty.regs
    assert hook.schedule.prune_step() < cfg.train_cfg.max_iters


@pytest.mark.parametrize('method, model', [(f'greg{v}{mode}', model)
                                           for v in (1, 2)
                                           for mode in ('', '-filter')
                                           for model in COCO])
def test_full_greg_configs_build(method, model):
    name = f'greg/{method}_{COCO[model].replace("-3x_", "-1x_")}'
    cfg = _cfg(name)
    base = _cfg(f'gap/cgap_{COCO[model]}')
    cfg.model.backbone.init_cfg = None  # no downloads in tests
    _, _, hook, _ = build_gap_training(cfg, name, iters_per_epoch=10000)
    assert type(hook).__name__ == 'GRegHook'
    assert hook.exclude == base.custom_hooks[0].exclude
    assert cfg.train_cfg.max_epochs == 12
    assert hook.schedule.stabilize == 6000  # 5% of 120000 iterations
    assert hook.schedule.granularity == 1e-4  # the paper's defaults
    assert hook.schedule.prune_step() < 120000


@pytest.mark.parametrize('name, detector, blocks, layers', [
    (f'scs/scs_{COCO["retinanet"]}', 'RetinaNet', 12, 16 * 2 + 2 * 4),
    (f'scs/scs_{DEMO}', 'RetinaNet', 5, 8 + 2 * 2),
    (f'scs/scs_{COCO["faster_rcnn"]}', 'FasterRCNN', 12, 16 * 2 + 2),
    ('scs/scs_faster-rcnn_r18-fpn_1xb8-2k_synthetic-coco.py', 'FasterRCNN',
     5, 8 + 2),
])
def test_scs_configs_build_gated_detectors(name, detector, blocks, layers):
    from mmengine.registry import MODELS, init_default_scope
    cfg = _cfg(name)
    assert cfg.model.type == 'SCSModel'
    assert cfg.custom_hooks[0].type == 'SCSHook'
    # the gate logits by SGD inside GaPOptimWrapper's step, after a warm-up
    assert cfg.optim_wrapper.type == 'GaPOptimWrapper'
    assert cfg.custom_hooks[0].gate_lr == 100.0
    assert cfg.custom_hooks[0].begin == 0.25
    cfg.model.architecture.backbone.init_cfg = None  # no downloads
    cfg.model.flops_input_shape = (3, 64, 64)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    assert type(model.architecture).__name__ == detector
    assert len(model.gates.block_sites) == blocks
    assert len(model.gates.channel_sites) == layers
    assert float(model.flops_ratio(hard=True)) == 1.0  # pruning mode


@pytest.mark.parametrize('name, layers', [
    ('scs/scs_pointnet2_ssg_8xb16-200e_shapenet-part.py', 10),
    ('scs/scs_pointnet2_ssg_1xb16-36e_synthetic-shapenet-part.py', 8),
])
def test_scs_pointnet2_configs_gate_the_inner_mlp_layers(name, layers):
    pytest.importorskip('mmdet3d')
    import gap_mm3d  # noqa: F401
    from mmdet3d.registry import MODELS
    from mmengine.registry import init_default_scope
    cfg = _cfg(name)
    assert cfg.optim_wrapper.type == 'GaPOptimWrapper'
    assert cfg.custom_hooks[0].type == 'SCSHook'
    cfg.model.flops_input_shape = (256, 6)
    init_default_scope('mmdet3d')
    model = MODELS.build(cfg.model)
    assert type(model.architecture).__name__ == 'PointNet2PartSeg'
    assert len(model.gates.channel_sites) == layers
    assert not model.gates.block_sites
    modules = dict(model.architecture.named_modules())
    for site in model.gates.channel_sites:
        # never an MLP's last layer: its output leaves the Sequential
        mlp, layer = site.rsplit('.', 2)[:2]
        assert layer != list(modules[mlp]._modules)[-1], site
    assert float(model.flops_ratio(hard=True)) == 1.0


def test_ssd300_config_appends_gap_and_trains_one_step():
    """configs/gap/cgap_ssd300_vgg16_8xb8-2x_coco.py keeps mmdet's SSD
    hooks, evaluates through FixedSSDHead and prunes 80% ERK of the 22.9 M
    weights between the stem and the output convs."""
    name = 'gap/cgap_ssd300_vgg16_8xb8-2x_coco.py'
    cfg = _cfg(name)
    assert [h['type'] for h in cfg.custom_hooks] == [
        'NumClassCheckHook', 'CheckInvalidLossHook', 'GaPHook'
    ]
    assert cfg.model.bbox_head.type == 'FixedSSDHead'
    assert cfg.optim_wrapper.type == 'GaPOptimWrapper'
    assert cfg.optim_wrapper.optimizer.lr == 2e-3  # mmdet's SGD, kept
    cfg.model.backbone.init_cfg = None  # no downloads in tests
    model, wrapper, hook, runner = build_gap_training(cfg, name)
    sp = hook.sparsifier
    assert sp.num_partitions == 4
    assert sum(p.numel() for p in sp.params.values()) == 22_933_504
    assert not any(n.startswith(('backbone.features.0.', 'bbox_head.'))
                   for n in sp.names)
    assert [len(g) for g in sp.partitions] == [9, 3, 2, 8]
    model.train()
    losses = model.train_step(_batch(size=300), wrapper)
    assert all(torch.isfinite(v).all() for v in losses.values())
    hook.after_train_iter(runner, 0)
    _assert_erk_at(sp, 0.8)
