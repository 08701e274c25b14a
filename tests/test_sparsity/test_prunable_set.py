# Copyright (c) gap_mm contributors. All rights reserved.
"""The default prunable set: transposed convs, attention projections (each
of q, k, v at its own count), frozen weights and the output layers of
heads left dense, and what the start table says about what stays dense."""
import inspect
import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

from gap_mm.errors import GaPConfigError
from gap_mm.sparsity import (FROZEN_WHY, OUTPUT_LAYERS, MagnitudeSparsifier,
                             WeightLayout, dense_weights, erk_keep,
                             format_layer_table, format_partitions,
                             format_selection, nm_mask, num_kept,
                             select_prunable)

E = 16  # embed dims of the attention


class AttnNet(nn.Module):
    """A transformer layer (packed q/k/v), an attention with separate
    projections, a transposed conv and a linear classifier."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(E, 2, 32, dropout=0.0)
        self.cross = nn.MultiheadAttention(E, 2, kdim=8, vdim=12)
        self.up = nn.ConvTranspose2d(4, 6, 3, stride=2)
        self.fc = nn.Linear(E, 4)


def _net(seed=0):
    torch.manual_seed(seed)
    return AttnNet()


def test_default_set_covers_attention_and_transposed_convs():
    params = select_prunable(_net())
    assert list(params) == [
        'encoder.self_attn.in_proj_weight',
        'encoder.self_attn.out_proj.weight', 'encoder.linear1.weight',
        'encoder.linear2.weight', 'cross.q_proj_weight',
        'cross.k_proj_weight', 'cross.v_proj_weight',
        'cross.out_proj.weight', 'up.weight', 'fc.weight'
    ]
    # out_proj (a Linear subclass) once, under its own name; the packed
    # projections as 3 blocks; the transposed conv's output on dim 1
    assert params.layouts['encoder.self_attn.in_proj_weight'] == \
        WeightLayout(blocks=3)
    assert params.layouts['up.weight'] == WeightLayout(out_dim=1)
    assert params.layouts['up.weight'].in_dim == 0
    assert params.layouts['cross.k_proj_weight'] == WeightLayout()
    # norms, biases and the attention's in_proj_bias stay out
    assert not any('norm' in n or 'bias' in n for n in params)
    # module_types still narrows it
    assert list(select_prunable(_net(), [nn.MultiheadAttention])) == [
        'encoder.self_attn.in_proj_weight', 'cross.q_proj_weight',
        'cross.k_proj_weight', 'cross.v_proj_weight'
    ]


@pytest.mark.parametrize('sparsity', [0.5, 0.8, 0.9])
def test_uniform_prunes_each_projection_to_its_own_count(sparsity):
    net = _net()
    init = {n: p.detach().clone() for n, p in net.named_parameters()}
    sp = MagnitudeSparsifier(select_prunable(net), sparsity, 'uniform')
    name = 'encoder.self_attn.in_proj_weight'
    assert sp.block_keep[name] == [num_kept(E * E, sparsity)] * 3
    assert sp.num_keep[name] == 3 * num_kept(E * E, sparsity)
    sp.prune([0])
    weight, keep = sp.params[name], sp.keep_mask(name)
    for i in range(3):  # q, k, v: each its own exact count and top-k
        rows = slice(i * E, (i + 1) * E)
        assert int(keep[rows].sum()) == num_kept(E * E, sparsity)
        assert int((weight[rows] != 0).sum()) == num_kept(E * E, sparsity)
        mag = init[name][rows].abs()
        assert mag[keep[rows]].min() >= mag[~keep[rows]].max()
    for other in ('up.weight', 'cross.k_proj_weight', 'fc.weight'):
        n = sp.params[other].numel()
        assert int(sp.keep_mask(other).sum()) == num_kept(n, sparsity)
    # the table shows a row per block
    rows = sp.layer_stats()
    row = next(r for r in rows if r['name'] == name)
    assert [b['kept'] for b in row['blocks']] == [
        num_kept(E * E, sparsity)
    ] * 3
    table = format_layer_table(rows)
    assert f'[0:{E}]' in table and f'[{2 * E}:{3 * E}]' in table
    assert 'Partitions: 0: 10 layers' in format_partitions(rows)


def test_erk_sees_the_shapes_of_the_projections():
    net = _net()
    sp = MagnitudeSparsifier(select_prunable(net), 0.8, 'erk')
    shapes = OrderedDict()
    for name, param in sp.params.items():
        if name.endswith('in_proj_weight'):
            for i in range(3):
                shapes[(name, i)] = (E, E)
        else:
            shapes[(name, 0)] = tuple(param.shape)
    expected = erk_keep(shapes, 0.8)
    for name in sp.names:
        blocks = [v for (n, _), v in expected.items() if n == name]
        assert sp.block_keep[name] == blocks, name
    sp.prune([0])
    keep = sp.keep_mask('encoder.self_attn.in_proj_weight')
    assert [int(b.sum()) for b in keep.chunk(3)] == sp.block_keep[
        'encoder.self_attn.in_proj_weight']


@pytest.mark.filterwarnings('ignore:global magnitude pruning removed')
def test_global_and_reprune_keep_block_counts():
    net = _net()
    sp = MagnitudeSparsifier(select_prunable(net), 0.8, 'global')
    sp.prune([0])
    total = sum(p.numel() for p in sp.params.values())
    assert sum(sp.num_keep.values()) == num_kept(total, 0.8)
    name = 'encoder.self_attn.in_proj_weight'
    blocks = list(sp.block_keep[name])
    assert sum(blocks) == sp.num_keep[name]
    # regrow, train a little (move the weights), prune back: each block
    # returns to its count
    sp.grow([0])
    with torch.no_grad():
        for p in sp.params.values():
            p.add_(torch.randn_like(p))
    state = sp.state_dict()
    sp.prune([0])
    assert sum(sp.num_keep.values()) == num_kept(total, 0.8)
    # a fresh sparsifier restores the per-block counts from the state
    fresh = MagnitudeSparsifier(select_prunable(net), 0.8, 'global')
    fresh.load_state_dict(state)
    assert fresh.block_keep[name] == blocks
    assert state['block_keep'] == {name: blocks}


def test_state_dict_roundtrip_is_exact():
    net = _net()
    sp = MagnitudeSparsifier(select_prunable(net), 0.7, 'uniform')
    sp.prune([0])
    state = sp.state_dict()
    other = _net(seed=1)
    sp2 = MagnitudeSparsifier(select_prunable(other), 0.7, 'uniform')
    sp2.load_state_dict(state)
    for name in sp.names:
        assert torch.equal(sp.keep_mask(name), sp2.keep_mask(name)), name
        assert (sp2.params[name][~sp2.keep_mask(name)] == 0).all()
    assert sp2.block_keep == sp.block_keep
    bad = dict(state, block_keep={'encoder.self_attn.in_proj_weight': [1]})
    with pytest.raises(GaPConfigError, match='do not fit its 3 blocks'):
        sp2.load_state_dict(bad)


def test_masks_survive_an_optimizer_step():
    from mmengine.optim import OptimWrapper

    from gap_mm.engine import GaPOptimWrapper
    net = _net()
    sp = MagnitudeSparsifier(select_prunable(net), 0.8, 'uniform')
    sp.prune([0])
    optim = torch.optim.AdamW(net.parameters(), lr=0.1, weight_decay=0.1)
    wrapper = GaPOptimWrapper(optimizer=optim)
    assert isinstance(wrapper, OptimWrapper)
    wrapper.attach_sparsifier(sp)
    x = torch.randn(5, 2, E)
    for _ in range(3):
        y = net.encoder(x)
        q = torch.randn(3, 2, E)
        a, _ = net.cross(q, torch.randn(5, 2, 8), torch.randn(5, 2, 12))
        u = net.up(torch.randn(1, 4, 5, 5))
        loss = y.square().mean() + a.square().mean() + u.square().mean() + \
            net.fc(y).square().mean()
        wrapper.update_params(loss)
        for name in sp.names:
            keep = sp.keep_mask(name)
            assert (sp.params[name][~keep] == 0).all(), name
            assert int((sp.params[name] != 0).sum()) <= int(keep.sum())


def test_nm_runs_along_the_input_of_a_transposed_conv():
    torch.manual_seed(0)
    up = nn.ConvTranspose2d(8, 4, 3)  # weight (in=8, out=4, 3, 3)
    sp = MagnitudeSparsifier(
        select_prunable(nn.Sequential(up)), pattern='2:4')
    sp.prune([0])
    keep = sp.keep_mask('0.weight')
    # every run of 4 consecutive input channels keeps 2, at each (out, k)
    runs = keep.reshape(2, 4, 4, 3, 3).sum(1)
    assert (runs == 2).all()
    assert torch.equal(keep, nm_mask(up.weight.abs(), 2, 4, dim=0))
    with pytest.raises(GaPConfigError,
                       match=r'must divide by 4 \(dim 0 of the weight\)'):
        MagnitudeSparsifier(
            select_prunable(nn.Sequential(nn.ConvTranspose2d(6, 8, 3))),
            pattern='2:4')


class Frozen(nn.Module):

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.layer1 = nn.Conv2d(8, 8, 3)
        self.layer2 = nn.Conv2d(8, 8, 3)
        for p in list(self.stem.parameters()) + list(
                self.layer1.parameters()):
            p.requires_grad_(False)


def test_frozen_weights_are_left_out_and_named():
    params = select_prunable(Frozen())
    assert list(params) == ['layer2.weight']
    assert dict(params.frozen) == {'stem.weight': 216, 'layer1.weight': 576}
    text = format_selection(Frozen(), params)
    assert 'Left dense, 2 frozen weights' in text
    assert 'stem.weight (216)' in text and 'layer1.weight (576)' in text
    assert 'never grow back' in text
    # a regex that reaches trainable weights too leaves the frozen out
    assert list(select_prunable(Frozen(), include=[r'^(stem|layer2)'])) == [
        'layer2.weight'
    ]
    # an exclude naming a frozen weight by hand stays valid
    assert list(select_prunable(Frozen(), exclude=[r'^stem\.'])) == [
        'layer2.weight'
    ]


def test_including_only_frozen_weights_is_refused():
    with pytest.raises(GaPConfigError) as err:
        select_prunable(Frozen(), include=[r'^stem\.', r'^layer2\.'])
    msg = str(err.value)
    assert "include regex '^stem\\\\.' selects only frozen weights" in msg
    assert 'gets no gradient' in msg and 'never grow back' in msg
    with pytest.raises(GaPConfigError, match='frozen weights and 0 output'):
        select_prunable(Frozen(), exclude=[r'^layer2\.'])


def test_frozen_why_says_why():
    assert 'requires_grad=False' in FROZEN_WHY
    assert 'no gradient' in FROZEN_WHY


class WithEmbedding(nn.Module):

    def __init__(self):
        super().__init__()
        self.query = nn.Embedding(100, 16)  # 1600 values
        self.conv = nn.Conv2d(16, 16, 3)  # 2304
        self.head = nn.Linear(16, 16)  # 256
        self.scale = nn.Parameter(torch.ones(64))
        self.table = nn.Parameter(torch.ones(8, 8))


def test_large_dense_weights_are_named_with_how_to_include_them():
    model = WithEmbedding()
    params = select_prunable(model, exclude=[r'^head\.'])
    rows = {r['name']: r for r in dense_weights(model, params)}
    # tensors over 1% of the 2304 prunable weights: the embedding and the
    # excluded head; biases and the scale vector (1 dim) are dense by design
    assert set(rows) == {'query.weight', 'head.weight', 'table'}
    assert 'not a layer weight' in rows['table']['why']
    assert rows['query.weight']['how'] == "add 'Embedding' to module_types"
    assert rows['head.weight']['why'] == "excluded by the regex '^head\\\\.'"
    assert rows['head.weight']['how'] == 'take it out of `exclude`'
    text = format_selection(model, params)
    assert re.search(r'Large and dense: query\.weight 100x16 \(1,600 '
                     r'values, 69\.4% of the 2,304 prunable\)', text)
    # nothing large: nothing said
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False))
    assert format_selection(plain, select_prunable(plain)) == ''


def test_drop_and_grow_keeps_block_counts():
    from types import SimpleNamespace

    from gap_mm.engine.hooks.set_hook import SETHook
    net = _net()
    hook = SETHook(end=10, interval=1, drop_fraction=0.5, sparsity=0.8)
    hook.sparsifier = MagnitudeSparsifier(select_prunable(net), 0.8,
                                          'uniform')
    sp = hook.sparsifier
    sp.prune([0])
    hook.run_seed = 0
    hook.set_run_length(SimpleNamespace(max_iters=20, max_epochs=None))
    hook.schedule = hook.build_schedule()
    before = {n: sp.keep_mask(n).clone() for n in sp.names}
    events = []
    hook.apply_event = lambda runner, step, **kw: events.append(kw)
    hook.update(SimpleNamespace(), 1)
    assert events and events[0]['moved'] > 0
    name = 'encoder.self_attn.in_proj_weight'
    keep = sp.keep_mask(name)
    assert not torch.equal(keep, before[name])
    assert [int(b.sum()) for b in keep.chunk(3)] == sp.block_keep[name]


def test_output_layer_table_names_real_attributes():
    """Every class of :data:`OUTPUT_LAYERS` is one mmdet (or mmseg,
    mmdet3d) ships, and every attribute is assigned in its sources (or its
    bases')."""
    pytest.importorskip('mmdet')
    import mmdet.models  # noqa: F401
    from mmdet.models.dense_heads.atss_vlfusion_head import VLFusionModule
    from mmdet.registry import MODELS
    classes = dict(MODELS.module_dict, VLFusionModule=VLFusionModule)
    try:
        import mmdet3d.models  # noqa: F401
        from mmdet3d.registry import MODELS as MODELS3D
        classes.update(MODELS3D.module_dict)
    except ImportError:
        pass
    missing, wrong = [], []
    for cls_name, attrs in OUTPUT_LAYERS.items():
        cls = classes.get(cls_name)
        if cls is None:
            if cls_name in ('BaseDecodeHead', 'Base3DDecodeHead'):
                continue  # mmseg / mmdet3d, which may be absent
            missing.append(cls_name)
            continue
        source = ''.join(
            inspect.getsource(k) for k in cls.__mro__
            if k.__module__.startswith(('mmdet', 'mmseg')))
        for attr in attrs:
            if not re.search(rf'self\.{attr}\b\s*(=|,)', source):
                wrong.append(f'{cls_name}.{attr}')
    assert not missing, missing
    assert not wrong, wrong


def test_resume_with_another_prunable_set_names_the_difference():
    net = _net()
    old = MagnitudeSparsifier(
        select_prunable(net, [nn.Conv2d, nn.Linear]), 0.8)
    old.prune([0])
    new = MagnitudeSparsifier(select_prunable(net), 0.8)
    with pytest.raises(GaPConfigError) as err:
        new.load_state_dict(old.state_dict())
    msg = str(err.value)
    assert 'Prunable in the checkpoint only: []' in msg
    assert 'here only: [encoder.self_attn.in_proj_weight' in msg
    assert '`module_types`, `prune_output_layers` or `exclude`' in msg
