# Copyright (c) gap_mm contributors. All rights reserved.
"""Slimming: channel groups, exact removal and folding, SlimModel, and the
converter tool on the demo detector."""
import copy
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import MODELS, init_default_scope
from torch import nn

import gap_mm  # noqa: F401 (registers SlimModel)
from gap_mm.errors import GaPConfigError
from gap_mm.export.slim import (apply_slimming, count_params, plan_slimming,
                                resize_to)
from gap_mm.sparsity import channel_followers, find_channel_groups

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_NAME = 'retinanet_r18-fpn_1xb8-2k_synthetic-coco'
DEMO = osp.join(ROOT, 'configs', 'gap', f'cgap_{DEMO_NAME}.py')
DEMO_GROUPS = [
    f'backbone.layer{i}.{j}.conv1' for i in (1, 2, 3, 4) for j in (0, 1)
] + [f'bbox_head.{t}_convs.{i}.conv' for t in ('cls', 'reg') for i in (0, 1)]


def _demo_model():
    init_default_scope('mmdet')
    cfg = Config.fromfile(DEMO)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    _random_norms(model)
    return cfg, model.eval()


def _random_norms(model):
    """Running statistics and affine parameters far from their defaults,
    so a removed channel's constant is not 0 by accident."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-1, 1)


def _zero_filters(model, every=2, with_channel=True):
    """Zero every ``every``-th filter of each group's producer; with
    ``with_channel`` also its norm scale and shift (bias), as filter-wise
    GReg does. Returns the number of zeroed filters."""
    modules = dict(model.named_modules())
    followers = channel_followers(model)
    n = 0
    with torch.no_grad():
        for group in find_channel_groups(model)[0]:
            weight = modules[group.producer].weight
            weight[::every] = 0
            n += weight[::every].shape[0]
            if with_channel:
                for _, param in followers[group.producer + '.weight']:
                    param[::every] = 0
            elif modules[group.producer].bias is not None:
                modules[group.producer].bias.uniform_(-1, 1)
    return n


def _outputs_close(a, b, atol=1e-5):
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-5)
        return
    for x, y in zip(a, b):
        _outputs_close(x, y, atol)


def test_groups_of_the_demo_detector():
    _, model = _demo_model()
    groups, skipped = find_channel_groups(model)
    assert [g.producer for g in groups] == DEMO_GROUPS
    assert skipped == {}
    by = {g.producer: g for g in groups}
    assert by['backbone.layer1.0.conv1'].consumers == [
        'backbone.layer1.0.conv2'
    ]
    assert by['backbone.layer1.0.conv1'].norm == 'backbone.layer1.0.bn1'
    assert by['bbox_head.cls_convs.1.conv'].consumers == [
        'bbox_head.retina_cls'
    ]
    assert by['bbox_head.cls_convs.1.conv'].norm is None  # conv with bias
    # never a residual block's last conv, a downsample, the FPN or the stem
    for g in groups:
        assert not g.producer.endswith(('conv2', 'downsample.0'))
        assert not g.producer.startswith(('neck', 'backbone.conv1'))


def test_removed_channels_leave_predictions_unchanged():
    _, model = _demo_model()
    n_zero = _zero_filters(model)
    x = torch.randn(2, 3, 96, 96)
    ref = model._forward(x)
    before = count_params(model)
    plan = plan_slimming(model)
    # every zero filter goes: its channel is exactly 0 after norm and ReLU
    assert sum(r['removed'] for r in plan.rows) == n_zero
    assert all(r['kept_zero'] == 0 for r in plan.rows)
    assert plan.fold == {}
    apply_slimming(model, plan)
    mods = dict(model.named_modules())
    for r in plan.rows:
        assert mods[r['producer']].weight.shape[0] == r['channels'] // 2
    assert mods['backbone.layer1.0.bn1'].num_features == 16
    assert mods['backbone.layer1.0.conv2'].weight.shape[1] == 16
    assert mods['bbox_head.retina_cls'].in_channels == 32
    assert count_params(model) < before
    _outputs_close(ref, model._forward(x))


def test_a_constant_channel_before_a_3x3_conv_is_kept_and_said_why():
    _, model = _demo_model()
    _zero_filters(model, with_channel=False)  # the norm shift stays
    x = torch.randn(1, 3, 64, 64)
    ref = model._forward(x)
    plan = plan_slimming(model)
    row = next(r for r in plan.rows
               if r['producer'] == 'backbone.layer2.0.conv1')
    # bn1's constant goes through a ReLU: 0 where it is <= 0 (removed),
    # else it reaches conv2, a zero-padded 3x3 conv (kept)
    modules = dict(model.named_modules())
    bn = modules['backbone.layer2.0.bn1']
    const = torch.relu(bn.bias - bn.weight * bn.running_mean /
                       torch.sqrt(bn.running_var + bn.eps))[::2]
    assert row['zero'] == 32
    assert row['removed'] == int((const == 0).sum()) > 0
    assert row['kept_zero'] == int((const > 0).sum()) > 0
    assert 'zero-padded 3x3 conv (backbone.layer2.0.conv2)' in row['why_kept']
    apply_slimming(model, plan)
    _outputs_close(ref, model._forward(x))


def test_constants_fold_into_1x1_and_linear_consumers():
    init_default_scope('mmdet')
    torch.manual_seed(0)
    # Bottleneck: conv2 (3x3) feeds conv3 (1x1): its constants fold
    backbone = MODELS.build(
        dict(
            type='ResNet',
            depth=50,
            base_channels=8,
            num_stages=2,
            strides=(1, 2),
            dilations=(1, 1),
            out_indices=(1, ),
            norm_eval=False))
    backbone.eval()  # mmdet's ResNet.train returns None
    _random_norms(backbone)
    producers = [g.producer for g in find_channel_groups(backbone)[0]]
    assert producers[:2] == ['layer1.0.conv1', 'layer1.0.conv2']
    with torch.no_grad():
        backbone.layer1[0].conv2.weight[:3] = 0
    x = torch.randn(2, 3, 32, 32)
    ref = backbone(x)
    plan = plan_slimming(backbone)
    row = next(r for r in plan.rows if r['producer'] == 'layer1.0.conv2')
    bn = backbone.layer1[0].bn2
    n_const = int((torch.relu(bn.bias - bn.weight * bn.running_mean /
                              torch.sqrt(bn.running_var + bn.eps))[:3]
                   > 0).sum())
    assert row['removed'] == 3 and row['folded'] == n_const > 0
    assert list(plan.fold) == ['layer1.0.conv3']
    assert backbone.layer1[0].conv3.bias is None
    apply_slimming(backbone, plan)
    assert backbone.layer1[0].conv3.bias is not None
    _outputs_close(ref, backbone(x))

    # a box head's shared FCs: linear consumers, constants fold
    head = MODELS.build(
        dict(
            type='Shared2FCBBoxHead',
            in_channels=4,
            roi_feat_size=2,
            fc_out_channels=16,
            num_classes=3)).eval()
    groups = find_channel_groups(head)[0]
    assert [(g.producer, g.consumers) for g in groups] == [
        ('shared_fcs.0', ['shared_fcs.1']),
        ('shared_fcs.1', ['fc_cls', 'fc_reg']),
    ]
    with torch.no_grad():
        for fc in head.shared_fcs:
            fc.weight[:5] = 0
            fc.bias.uniform_(-1, 1)
    feats = torch.randn(3, 4, 2, 2)
    ref = head(feats)
    plan = plan_slimming(head)
    assert [r['removed'] for r in plan.rows] == [5, 5]
    apply_slimming(head, plan)
    assert head.fc_cls.in_features == 11
    _outputs_close(ref, head(feats))


def test_slim_model_builds_the_slimmed_shapes_from_a_config():
    cfg, model = _demo_model()
    _zero_filters(model)
    x = torch.randn(1, 3, 64, 64)
    plan = plan_slimming(model)
    apply_slimming(model, plan)
    ref = model._forward(x)
    built = MODELS.build(
        dict(
            type='SlimModel',
            model=copy.deepcopy(cfg.model),
            channels=plan.widths,
            biased=list(plan.fold)))
    assert type(built).__name__ == 'RetinaNet'
    built.load_state_dict(model.state_dict(), strict=True)
    _outputs_close(ref, built.eval()._forward(x))


def test_slim_model_bad_values_name_them():
    cfg, model = _demo_model()
    with pytest.raises(
            GaPConfigError,
            match=r"\['neck.fpn_convs.0.conv'\], "
            r'which are not slimmable .* valid producers are '
            r"\['backbone.layer1.0.conv1'"):
        resize_to(model, {'neck.fpn_convs.0.conv': 8})
    with pytest.raises(
            GaPConfigError,
            match=r"channels\['backbone.layer1.0.conv1'\] = 40; it must be an "
            r'int in \[1, 32\]'):
        resize_to(model, {'backbone.layer1.0.conv1': 40})
    with pytest.raises(GaPConfigError, match='SlimModel needs model=dict'):
        MODELS.build(dict(type='SlimModel', model=None, channels={}))


def test_converter_writes_a_checkpoint_and_config_test_tools_load(tmp_path):
    cfg, model = _demo_model()
    n_zero = _zero_filters(model)
    ckpt = tmp_path / 'sparse.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(seed=0)), ckpt)
    out = tmp_path / 'slim'
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'model_converters', 'slim_model.py'), DEMO,
        str(ckpt),
        str(out), '--input-shape', '3', '64', '64'
    ],
                          capture_output=True,
                          text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert f'channels: removed {n_zero} of {2 * n_zero}' in proc.stdout
    assert 'FLOPs for an input of [3, 64, 64]' in proc.stdout
    diff = float(proc.stdout.split('max |difference| ')[1].split()[0])
    assert diff < 1e-4
    # the written config and checkpoint build and load as test.py would
    slim_cfg = Config.fromfile(
        str(out / f'cgap_{DEMO_NAME}_slim.py'))
    assert slim_cfg.model.type == 'SlimModel'
    assert slim_cfg.custom_hooks == []  # the GaPHook of the config is gone
    init_default_scope('mmdet')
    built = MODELS.build(slim_cfg.model)
    state = torch.load(out / 'slim.pth', weights_only=True)
    built.load_state_dict(state['state_dict'], strict=True)
    assert state['meta']['slim']['channels'] == {
        n: c // 2
        for n, c in zip(DEMO_GROUPS, [32, 32, 64, 64, 128, 128, 256, 256] +
                        [64] * 4)
    }
    x = torch.randn(1, 3, 64, 64)
    _outputs_close(model._forward(x), built.eval()._forward(x))


def test_an_scs_checkpoint_exports_its_hard_structure(tmp_path):
    init_default_scope('mmdet')
    cfg_path = osp.join(ROOT, 'configs', 'scs', f'scs_{DEMO_NAME}.py')
    cfg = Config.fromfile(cfg_path)
    cfg.model.flops_input_shape = (3, 64, 64)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    _random_norms(model.architecture)
    gates = model.gates.gates()
    with torch.no_grad():
        gates['backbone.layer2.0.conv1'].logits[:40] = -1.0  # 40 of 64 off
        gates['bbox_head.cls_convs.0.conv'].logits[::2] = -1.0
        gates['backbone.layer3.1'].logits.fill_(-1.0)  # a block off
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    ref = model.architecture._forward(x)  # the gated model, 1[s > 0]
    ckpt = tmp_path / 'scs.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    out = tmp_path / 'slim'
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'model_converters', 'slim_model.py'), cfg_path,
        str(ckpt),
        str(out), '--input-shape', '3', '64', '64', '--cfg-options',
        'model.flops_input_shape=(3,64,64)'
    ],
                          capture_output=True,
                          text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "blocks removed (SCS gates off): ['backbone.layer3.1']" in \
        proc.stdout
    slim_cfg = Config.fromfile(
        str(out / f'scs_{DEMO_NAME}_slim.py'))
    assert slim_cfg.model.model.type == 'RetinaNet'  # the detector alone
    assert slim_cfg.custom_hooks == []
    built = MODELS.build(slim_cfg.model)
    state = torch.load(out / 'slim.pth', weights_only=True)
    built.load_state_dict(state['state_dict'], strict=True)
    # exactly the channels whose gates are on
    assert built.backbone.layer2[0].conv1.out_channels == 24
    assert built.bbox_head.cls_convs[0].conv.out_channels == 32
    assert isinstance(built.backbone.layer3[1], nn.Identity)
    _outputs_close(ref, built.eval()._forward(x))


class _PlainNormNet(BaseModel):
    """A stem and an mmdet BasicBlock whose norms have no affine
    parameters, then a linear layer."""

    def __init__(self):
        super().__init__()
        from mmdet.models.backbones.resnet import BasicBlock
        self.stem = nn.Sequential(
            nn.Conv2d(2, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
            nn.ReLU())
        self.block = BasicBlock(
            8, 8, norm_cfg=dict(type='BN', affine=False))
        self.fc = nn.Linear(32, 1)

    def _forward(self, x):
        return self.fc(self.block(self.stem(x)).flatten(1))

    def forward(self, x, data_samples=None, mode='tensor'):
        return self._forward(x)


def test_baking_gates_after_a_norm_without_affine_parameters():
    """The gate zeroed the channel after the norm; the baked model must
    too, though the norm has no shift to zero: its running mean is."""
    from gap_mm.export.slim import bake_gates
    MODELS.register_module(name='_PlainNormNet', module=_PlainNormNet,
                           force=True)
    model = MODELS.build(
        dict(type='SCSModel', architecture=dict(type='_PlainNormNet'),
             flops_input_shape=(2, 2, 2)))
    net = model.architecture
    with torch.no_grad():
        bn1 = net.block.bn1
        assert bn1.weight is None
        # a negative mean: an all-zero input would normalize to > 0
        bn1.running_mean.uniform_(-2, -1)
        bn1.running_var.uniform_(0.5, 2)
        model.gates.gates()['block.conv1'].logits[::2] = -1.0
    model.eval()
    x = torch.randn(3, 2, 2, 2)
    with torch.no_grad():
        ref = net(x)
    bake_gates(net, model.gates)
    assert (bn1.running_mean[::2] == 0).all()
    assert (bn1.running_mean[1::2] < -0.5).all()
    apply_slimming(net, plan_slimming(net))
    assert net.block.conv1.out_channels == 4
    with torch.no_grad():
        _outputs_close(ref, net(x))


def test_a_two_stage_scs_model_slims_to_its_gates():
    """Faster R-CNN: gates on the RoI head's shared FCs too; the FLOPs (RoI
    head on the RPN's test proposals) of the hard structure equal the
    slimmed detector's, and its outputs the gated model's."""
    from gap_mm.analysis import module_flops, network_forward
    from gap_mm.export.slim import bake_gates
    init_default_scope('mmdet')
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'scs',
                 'scs_faster-rcnn_r18-fpn_1xb8-2k_synthetic-coco.py'))
    cfg.model.flops_input_shape = (3, 64, 64)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    assert 'roi_head.bbox_head.shared_fcs.0' in model.gates.channel_sites
    _random_norms(model.architecture)
    gates = model.gates.gates()
    with torch.no_grad():
        gates['backbone.layer2.0.conv1'].logits[:40] = -1.0
        gates['roi_head.bbox_head.shared_fcs.0'].logits[::4] = -1.0
        gates['backbone.layer3.1'].logits.fill_(-1.0)
    model.eval()
    net = model.architecture
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = network_forward(net, x)
    ratio = float(model.flops_ratio(hard=True))
    model.gates.detach()
    full = module_flops(net, (3, 64, 64))['']
    model.gates.attach(net)
    bake_gates(net, model.gates)
    apply_slimming(net, plan_slimming(net))
    assert net.roi_head.bbox_head.shared_fcs[0].out_features == 192
    assert net.roi_head.bbox_head.shared_fcs[1].in_features == 192
    assert isinstance(net.backbone.layer3[1], nn.Identity)
    with torch.no_grad():
        _outputs_close(ref, network_forward(net, x))
    slim = module_flops(net, (3, 64, 64))['']
    assert slim / full == pytest.approx(ratio, rel=1e-9)


def test_a_pointnet2_scs_model_slims_to_its_gates():
    """PointNet++: gates on the shared MLPs' inner layers only; FLOPs of a
    point cloud; the slimmed network equals the gated one."""
    pytest.importorskip('mmdet3d')
    import gap_mm3d  # noqa: F401 (registers PointNet2PartSeg)
    from gap_mm.analysis import module_flops
    from gap_mm.export.slim import bake_gates
    from mmdet3d.registry import MODELS as MODELS3D
    from mmdet3d.structures import Det3DDataSample
    init_default_scope('mmdet3d')
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'scs',
                 'scs_pointnet2_ssg_1xb16-36e_synthetic-shapenet-part.py'))
    cfg.model.flops_input_shape = (128, 6)
    torch.manual_seed(0)
    model = MODELS3D.build(cfg.model)
    sites = list(model.gates.channel_sites)
    assert len(sites) == 8 and not model.gates.block_sites
    # each MLP's last layer leaves its Sequential: never gated
    assert 'sa_modules.0.mlps.0.layer2.conv' not in sites
    assert 'fp_modules.0.mlps.layer1.conv' not in sites
    _random_norms(model.architecture)
    gates = model.gates.gates()
    with torch.no_grad():
        gates['sa_modules.1.mlps.0.layer0.conv'].logits[:40] = -1.0
        gates['fp_modules.1.mlps.layer0.conv'].logits[::2] = -1.0
    model.eval()
    net = model.architecture
    points = torch.rand(2, 128, 6)
    samples = [Det3DDataSample(metainfo=dict(category_id=i)) for i in (0, 1)]
    with torch.no_grad():
        ref = net._forward(dict(points=points), samples)
    ratio = float(model.flops_ratio(hard=True))
    model.gates.detach()
    full = module_flops(net, (128, 6))['']
    model.gates.attach(net)
    bake_gates(net, model.gates)
    apply_slimming(net, plan_slimming(net))
    assert net.sa_modules[1].mlps[0].layer0.conv.out_channels == 24
    assert net.fp_modules[1].mlps.layer1.conv.in_channels == 64
    with torch.no_grad():
        _outputs_close(ref, net._forward(dict(points=points), samples))
    slim = module_flops(net, (128, 6))['']
    assert slim / full == pytest.approx(ratio, rel=1e-9)


def test_converter_input_shape_is_an_image_or_a_point_cloud(tmp_path):
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'model_converters', 'slim_model.py'), 'a.py',
        'b.pth',
        str(tmp_path), '--input-shape', '3', '160', '160', '1'
    ],
                          capture_output=True,
                          text=True,
                          cwd=ROOT)
    assert proc.returncode == 2
    assert '--input-shape must be C H W (an image) or N C (a point cloud) ' \
        'of positive ints, got [3, 160, 160, 1]' in proc.stderr
