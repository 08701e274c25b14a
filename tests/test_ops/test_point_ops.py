"""Tests of the pure-torch point operators against scalar references.

The references below are plain Python loops written from the definitions of
mmcv 2.1.0's CUDA kernels (``mmcv/ops/csrc/common/cuda/*_cuda_kernel.cuh``),
with float32 arithmetic done through numpy scalars in the kernels' order.
"""
import math
import sys
import types
import warnings

import numpy as np
import pytest
import torch

from gap_mm3d.ops import dispatch, point_ops_cpu

OP_NAMES = [
    'furthest_point_sample', 'furthest_point_sample_with_dist', 'ball_query',
    'grouping_operation', 'gather_points', 'three_nn', 'three_interpolate'
]


# ---------------------------------------------------------------- references
def _sq_dist(a, b):
    """Squared distance in float32, summed left to right like the kernels."""
    a = [np.float32(v) for v in a]
    b = [np.float32(v) for v in b]
    return ((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) +
            (a[2] - b[2]) * (a[2] - b[2]))


def ref_fps_from_dist(dist_fn, n, num_points):
    out = [0] * num_points
    temp = [np.float32(1e10)] * n
    old = 0
    for j in range(1, num_points):
        best, besti = -1.0, 0
        for k in range(n):
            d2 = min(dist_fn(old, k), temp[k])
            temp[k] = d2
            if d2 > best:
                best, besti = d2, k
        old = besti
        out[j] = old
    return out


def ref_fps(points, num_points):
    pts = points.numpy()
    return [
        ref_fps_from_dist(
            lambda i, k, p=p: _sq_dist(p[k], p[i]), len(p), num_points)
        for p in pts
    ]


def ref_fps_with_dist(dist, num_points):
    mats = dist.numpy()
    return [
        ref_fps_from_dist(lambda i, k, m=m: m[i, k], len(m), num_points)
        for m in mats
    ]


def ref_ball_query(min_radius, max_radius, sample_num, xyz, centres):
    min_r2 = np.float32(min_radius) * np.float32(min_radius)
    max_r2 = np.float32(max_radius) * np.float32(max_radius)
    out = np.zeros((xyz.shape[0], centres.shape[1], sample_num), np.int64)
    for b in range(xyz.shape[0]):
        for m in range(centres.shape[1]):
            cnt = 0
            for k in range(xyz.shape[1]):
                d2 = _sq_dist(centres[b, m].numpy(), xyz[b, k].numpy())
                if d2 == 0 or (min_r2 <= d2 < max_r2):
                    if cnt == 0:
                        out[b, m, :] = k
                    out[b, m, cnt] = k
                    cnt += 1
                    if cnt >= sample_num:
                        break
    return out


def ref_three_nn(target, source):
    bsz, n = target.shape[:2]
    dist = np.zeros((bsz, n, 3), np.float32)
    idx = np.zeros((bsz, n, 3), np.int64)
    for b in range(bsz):
        for i in range(n):
            best = [1e40] * 3
            besti = [0] * 3
            for k in range(source.shape[1]):
                d = float(_sq_dist(target[b, i].numpy(), source[b, k].numpy()))
                if d < best[0]:
                    best = [d, best[0], best[1]]
                    besti = [k, besti[0], besti[1]]
                elif d < best[1]:
                    best = [best[0], d, best[1]]
                    besti = [besti[0], k, besti[1]]
                elif d < best[2]:
                    best[2], besti[2] = d, k
            with np.errstate(over='ignore'):
                dist[b, i] = np.sqrt(np.array(best, np.float32))
            idx[b, i] = besti
    return dist, idx


def grid_points(bsz, n, seed, size=4):
    """Integer grid points: exact float32 distances with many ties."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, size, (bsz, n, 3), generator=gen).float()


def rand_points(bsz, n, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(bsz, n, 3, generator=gen)


# ----------------------------------------------------------------------- FPS
@pytest.mark.parametrize('n,num_points', [(40, 10), (40, 40), (7, 1)])
def test_fps_random(n, num_points):
    points = rand_points(2, n, seed=n + num_points)
    out = point_ops_cpu.furthest_point_sample(points, num_points)
    assert out.dtype == torch.int32
    assert out.shape == (2, num_points)
    assert out.tolist() == ref_fps(points, num_points)
    if num_points == n:  # every point is picked exactly once
        assert sorted(out[0].tolist()) == list(range(n))


def test_fps_ties_and_oversampling():
    # 30 points on a 3x3x3 grid: duplicates and equal distances, and more
    # samples than distinct points, after which mmcv repeats index 0.
    points = grid_points(2, 30, seed=1, size=3)
    out = point_ops_cpu.furthest_point_sample(points, 40)
    assert out.tolist() == ref_fps(points, 40)
    assert (out[:, -5:] == 0).all()


def test_fps_with_dist_matches_fps_on_squared_distances():
    points = rand_points(2, 32, seed=3)
    dist = torch.stack([
        torch.tensor([[float(_sq_dist(p[i], p[k])) for k in range(32)]
                      for i in range(32)]) for p in points.numpy()
    ])
    out = point_ops_cpu.furthest_point_sample_with_dist(dist, 12)
    assert out.dtype == torch.int32
    assert out.tolist() == ref_fps_with_dist(dist, 12)
    assert torch.equal(out, point_ops_cpu.furthest_point_sample(points, 12))


def test_fps_float64_and_zero_points():
    points = rand_points(1, 20, seed=4)
    out64 = point_ops_cpu.furthest_point_sample(points.double(), 8)
    assert out64.dtype == torch.int32
    assert point_ops_cpu.furthest_point_sample(points, 0).shape == (1, 0)


# ---------------------------------------------------------------- ball query
@pytest.mark.parametrize('min_radius,max_radius,sample_num', [
    (0., 0.3, 5),
    (0., 0.3, 40),
    (0.1, 0.4, 8),
])
def test_ball_query_random(min_radius, max_radius, sample_num):
    xyz = rand_points(2, 40, seed=5)
    centres = torch.cat([xyz[:, :6], rand_points(2, 4, seed=6)], dim=1)
    out = point_ops_cpu.ball_query(min_radius, max_radius, sample_num, xyz,
                                   centres)
    assert out.dtype == torch.int32
    assert out.shape == (2, 10, sample_num)
    expected = ref_ball_query(min_radius, max_radius, sample_num, xyz, centres)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_ball_query_edge_cases():
    xyz = grid_points(1, 30, seed=7)
    centres = torch.tensor([[
        [1., 1., 1.],  # exact boundary distances: d2 == 1 and d2 == 4
        [50., 50., 50.],  # no neighbour: a row of zeros
        xyz[0, 3].tolist(),  # a duplicate point at d2 == 0
    ]])
    for min_radius, max_radius, sample_num in [(0., 1., 4), (1., 2., 6),
                                               (1., 2., 64), (0.5, 1.5, 3)]:
        out = point_ops_cpu.ball_query(min_radius, max_radius, sample_num, xyz,
                                       centres)
        expected = ref_ball_query(min_radius, max_radius, sample_num, xyz,
                                  centres)
        np.testing.assert_array_equal(out.numpy(), expected)
        assert (out[0, 1] == 0).all()
        if sample_num > 3:
            # min_radius > 0 still keeps the centre's own point (d2 == 0).
            assert 3 in out[0, 2].tolist()
    with pytest.raises(AssertionError):
        point_ops_cpu.ball_query(0.5, 0.5, 4, xyz, centres)


def test_ball_query_chunked(monkeypatch):
    xyz = rand_points(2, 50, seed=8)
    centres = rand_points(2, 13, seed=9)
    full = point_ops_cpu.ball_query(0.05, 0.5, 7, xyz, centres)
    monkeypatch.setattr(point_ops_cpu, '_CHUNK_NUMEL', 2 * 50 * 3)
    assert torch.equal(
        point_ops_cpu.ball_query(0.05, 0.5, 7, xyz, centres), full)
    monkeypatch.setattr(point_ops_cpu, '_CHUNK_NUMEL', 1)
    assert torch.equal(
        point_ops_cpu.ball_query(0.05, 0.5, 7, xyz, centres), full)


# ------------------------------------------------------ grouping and gather
def test_grouping_operation():
    gen = torch.Generator().manual_seed(10)
    features = torch.randn(2, 4, 9, generator=gen)
    indices = torch.randint(0, 9, (2, 5, 3), generator=gen).int()
    out = point_ops_cpu.grouping_operation(features, indices)
    assert out.shape == (2, 4, 5, 3)
    for b, c, m, s in np.ndindex(*out.shape):
        assert out[b, c, m, s] == features[b, c, indices[b, m, s]]
    with pytest.raises(NotImplementedError):
        point_ops_cpu.grouping_operation(features, indices, indices[0, 0],
                                         indices[0, 0])


def test_gather_points():
    gen = torch.Generator().manual_seed(11)
    features = torch.randn(2, 3, 8, generator=gen)
    indices = torch.randint(0, 8, (2, 6), generator=gen).int()
    out = point_ops_cpu.gather_points(features, indices)
    assert out.shape == (2, 3, 6)
    for b, c, m in np.ndindex(*out.shape):
        assert out[b, c, m] == features[b, c, indices[b, m]]


def test_gradcheck_grouping_and_gather():
    gen = torch.Generator().manual_seed(12)
    features = torch.randn(
        2, 3, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    # Repeated indices make the backward accumulate.
    group_idx = torch.randint(0, 6, (2, 4, 5), generator=gen).int()
    gather_idx = torch.tensor([[0, 0, 5, 2], [1, 3, 3, 3]]).int()
    assert torch.autograd.gradcheck(
        lambda f: point_ops_cpu.grouping_operation(f, group_idx), features)
    assert torch.autograd.gradcheck(
        lambda f: point_ops_cpu.gather_points(f, gather_idx), features)


# ----------------------------------------------------------- three_nn/interp
@pytest.mark.parametrize('grid', [False, True])
def test_three_nn(grid):
    make = grid_points if grid else rand_points
    target, source = make(2, 25, seed=13), make(2, 9, seed=14)
    dist, idx = point_ops_cpu.three_nn(target, source)
    assert dist.dtype == torch.float32 and idx.dtype == torch.int32
    ref_dist, ref_idx = ref_three_nn(target, source)
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    np.testing.assert_array_equal(dist.numpy(), ref_dist)


def test_three_nn_chunked_and_few_sources(monkeypatch):
    target, source = rand_points(2, 11, seed=15), rand_points(2, 2, seed=16)
    dist, idx = point_ops_cpu.three_nn(target, source)
    ref_dist, ref_idx = ref_three_nn(target, source)
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    np.testing.assert_array_equal(dist.numpy(), ref_dist)
    assert torch.isinf(dist[..., 2]).all() and (idx[..., 2] == 0).all()
    # float64 keeps mmcv's 1e40 sentinel finite: sqrt(1e40) == 1e20.
    dist64, _ = point_ops_cpu.three_nn(target.double(), source.double())
    assert torch.all(dist64[..., 2] == math.sqrt(1e40))
    monkeypatch.setattr(point_ops_cpu, '_CHUNK_NUMEL', 1)
    source = rand_points(2, 6, seed=17)
    chunked = point_ops_cpu.three_nn(target, source)
    np.testing.assert_array_equal(chunked[1].numpy(),
                                  ref_three_nn(target, source)[1])


def test_three_interpolate():
    gen = torch.Generator().manual_seed(18)
    features = torch.randn(2, 4, 7, generator=gen)
    indices = torch.randint(0, 7, (2, 5, 3), generator=gen).int()
    weight = torch.rand(2, 5, 3, generator=gen)
    out = point_ops_cpu.three_interpolate(features, indices, weight)
    assert out.shape == (2, 4, 5)
    for b, c, n in np.ndindex(*out.shape):
        expected = sum(weight[b, n, k] * features[b, c, indices[b, n, k]]
                       for k in range(3))
        assert torch.allclose(out[b, c, n], expected, atol=1e-6)


def test_gradcheck_three_interpolate():
    gen = torch.Generator().manual_seed(19)
    features = torch.randn(
        2, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    indices = torch.tensor([[[0, 0, 4]] * 4, [[1, 2, 3]] * 4]).int()
    weight = torch.rand(
        2, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda f, w: point_ops_cpu.three_interpolate(f, indices, w),
        (features, weight))


# ------------------------------------------------------------------ dispatch
@pytest.mark.parametrize('name', OP_NAMES)
def test_dispatch_cpu_uses_pure_torch(name, monkeypatch):
    # With mmcv.ops unimportable the CPU path must neither need nor try it.
    monkeypatch.setitem(sys.modules, 'mmcv.ops', None)
    monkeypatch.setattr(dispatch, '_import_mmcv_ops',
                        lambda: pytest.fail('imported mmcv.ops'))
    assert dispatch.get_point_op(name, torch.zeros(1)) is getattr(
        point_ops_cpu, name)


def test_dispatch_calls_on_cpu(monkeypatch):
    monkeypatch.setitem(sys.modules, 'mmcv.ops', None)
    xyz = rand_points(2, 30, seed=20)
    idx = dispatch.furthest_point_sample(xyz, 8)
    assert torch.equal(idx, point_ops_cpu.furthest_point_sample(xyz, 8))
    centres = dispatch.gather_points(xyz.transpose(1, 2).contiguous(), idx)
    centres = centres.transpose(1, 2).contiguous()
    group = dispatch.ball_query(0., 0.4, 5, xyz, centres)
    assert torch.equal(group, point_ops_cpu.ball_query(0., 0.4, 5, xyz,
                                                       centres))
    grouped = dispatch.grouping_operation(xyz.transpose(1, 2), group)
    assert grouped.shape == (2, 3, 8, 5)
    dist, nn_idx = dispatch.three_nn(xyz, centres)
    out = dispatch.three_interpolate(
        centres.transpose(1, 2), nn_idx, torch.full_like(dist, 1 / 3))
    assert out.shape == (2, 3, 30)


def test_dispatch_other_devices(monkeypatch):
    meta = torch.empty(1, device='meta')
    fake_ops = types.SimpleNamespace(three_nn=object())
    monkeypatch.setattr(dispatch, '_import_mmcv_ops', lambda: fake_ops)
    assert dispatch.get_point_op('three_nn', meta) is fake_ops.three_nn
    # Without mmcv.ops a non-CPU tensor falls back to the pure-torch code.
    monkeypatch.setattr(dispatch, '_import_mmcv_ops', lambda: None)
    monkeypatch.setattr(dispatch, '_MMCV_FALLBACK_WARNED', False)
    with pytest.warns(UserWarning, match='mmcv.ops could not be imported'):
        assert dispatch.get_point_op('three_nn',
                                     meta) is point_ops_cpu.three_nn
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # warned once only
        dispatch.get_point_op('three_nn', meta)


def test_dispatch_cuda_needs_an_mmcv_built_with_cuda(monkeypatch):
    cuda_tensor = types.SimpleNamespace(device=torch.device('cuda'))
    built = dict(cuda='12.4', cpu='not available')
    for build, expected in (('cuda', 'mmcv'), ('cpu', 'torch')):
        # a module, as mmcv.ops is (the check is cached per module)
        fake_ops = types.ModuleType(f'fake_mmcv_ops_{build}')
        fake_ops.three_nn = object()
        fake_ops.get_compiling_cuda_version = lambda b=build: built[b]
        monkeypatch.setattr(dispatch, '_import_mmcv_ops', lambda: fake_ops)
        monkeypatch.setattr(dispatch, '_MMCV_FALLBACK_WARNED', False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            op = dispatch.get_point_op('three_nn', cuda_tensor)
        if expected == 'mmcv':
            assert op is fake_ops.three_nn and not caught
        else:
            assert op is point_ops_cpu.three_nn
            assert 'mmcv was built without CUDA ops' in str(caught[0].message)
        assert dispatch._has_cuda_kernels(fake_ops) == (build == 'cuda')


def test_dispatch_gives_three_interpolate_one_dtype(monkeypatch):
    # Under CUDA autocast the features are fp16 while the interpolation
    # weights come from fp32 xyz; mmcv's kernel reads both as the features'
    # dtype, so dispatch casts the weights for every backend.
    seen = []

    def kernel(features, indices, weight):
        seen.append((features.dtype, weight.dtype))
        return point_ops_cpu.three_interpolate(features, indices, weight)

    monkeypatch.setattr(dispatch, 'get_point_op', lambda name, t: kernel)
    features = torch.rand(2, 4, 6, dtype=torch.float64)
    indices = torch.zeros(2, 5, 3, dtype=torch.int32)
    weight = torch.full((2, 5, 3), 1 / 3)
    out = dispatch.three_interpolate(features, indices, weight)
    assert seen == [(torch.float64, torch.float64)]
    assert out.dtype == torch.float64 and out.shape == (2, 4, 5)


# ------------------------------------------------------- against mmcv (GPU)
def _assert_same_or_near_tie(points, ours, theirs):
    """Two FPS sequences agree up to a first pick that is a near tie.

    The CUDA kernel may fuse multiply-adds, so its squared distances can
    differ in the last bit, and an argmax between two almost equally far
    points may then flip; after that the sequences legitimately diverge.
    """
    diverged = (ours != theirs).nonzero()
    if diverged.numel() == 0:
        return
    j = diverged[0, 0].item()
    chosen = points.double()[ours[:j].long()]
    far = [
        torch.cdist(points.double()[[int(seq[j])]], chosen).min().item()
        for seq in (ours, theirs)
    ]
    assert abs(far[0] - far[1]) <= 1e-6 * max(far), (j, far)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs CUDA and mmcv.ops kernels')
def test_against_mmcv_cuda():
    mmcv_ops = pytest.importorskip('mmcv.ops')
    gen = torch.Generator().manual_seed(21)
    bsz, n, npoint, channels = 4, 1024, 256, 16
    xyz = torch.randn(bsz, n, 3, generator=gen)
    xyz = xyz / xyz.norm(dim=-1, keepdim=True)  # on a sphere, like shapes
    features = torch.randn(bsz, channels, n, generator=gen)
    cuda = torch.device('cuda')
    assert dispatch.get_point_op('ball_query', xyz.to(cuda)) is \
        mmcv_ops.ball_query

    fps = point_ops_cpu.furthest_point_sample(xyz, npoint)
    fps_gpu = mmcv_ops.furthest_point_sample(xyz.to(cuda), npoint)
    for points, ours, theirs in zip(xyz, fps, fps_gpu.cpu()):
        _assert_same_or_near_tie(points, ours, theirs)
    dist = torch.cdist(xyz, xyz).contiguous()
    assert torch.equal(
        point_ops_cpu.furthest_point_sample_with_dist(dist, npoint),
        mmcv_ops.furthest_point_sample_with_dist(dist.to(cuda), npoint).cpu())

    centres = point_ops_cpu.gather_points(
        xyz.transpose(1, 2).contiguous(), fps).transpose(1, 2).contiguous()
    # The pure-torch code is device agnostic (the fallback without mmcv.ops)
    # and, using separate kernels, exact there too.
    assert torch.equal(
        point_ops_cpu.ball_query(0., 0.2, 32, xyz.to(cuda),
                                 centres.to(cuda)).cpu(),
        point_ops_cpu.ball_query(0., 0.2, 32, xyz, centres))
    assert torch.equal(
        point_ops_cpu.furthest_point_sample(xyz.to(cuda), npoint).cpu(), fps)
    for min_r, max_r, nsample in [(0., 0.2, 32), (0., 0.4, 64),
                                  (0.1, 0.3, 16)]:
        idx = point_ops_cpu.ball_query(min_r, max_r, nsample, xyz, centres)
        idx_gpu = mmcv_ops.ball_query(min_r, max_r, nsample, xyz.to(cuda),
                                      centres.to(cuda)).cpu()
        # The kernel may fuse multiply-adds; a point within an ulp of the
        # boundary may then differ. Allow at most 0.5% of the rows.
        diff_rows = (idx != idx_gpu).any(dim=-1).float().mean().item()
        assert diff_rows <= 5e-3, diff_rows

    idx_gpu = idx_gpu.to(cuda)
    feats = features.clone().requires_grad_()
    feats_gpu = features.to(cuda).requires_grad_()
    grouped = point_ops_cpu.grouping_operation(feats, idx_gpu.cpu())
    grouped_gpu = mmcv_ops.grouping_operation(feats_gpu, idx_gpu)
    assert torch.equal(grouped, grouped_gpu.cpu())
    grad = torch.randn(grouped.shape, generator=gen)
    grouped.backward(grad)
    grouped_gpu.backward(grad.to(cuda))
    assert torch.allclose(feats.grad, feats_gpu.grad.cpu(), atol=1e-5)

    feats.grad = feats_gpu.grad = None
    gathered = point_ops_cpu.gather_points(feats, fps)
    gathered_gpu = mmcv_ops.gather_points(feats_gpu, fps.to(cuda))
    assert torch.equal(gathered, gathered_gpu.cpu())
    gathered.sum().backward()
    gathered_gpu.sum().backward()
    assert torch.allclose(feats.grad, feats_gpu.grad.cpu())

    nn_dist, nn_idx = point_ops_cpu.three_nn(xyz, centres)
    nn_dist_gpu, nn_idx_gpu = mmcv_ops.three_nn(xyz.to(cuda), centres.to(cuda))
    assert torch.allclose(nn_dist, nn_dist_gpu.cpu(), atol=1e-6)
    assert (nn_idx != nn_idx_gpu.cpu()).float().mean().item() <= 1e-3

    weight = 1.0 / (nn_dist + 1e-8)
    weight = weight / weight.sum(dim=2, keepdim=True)
    src = torch.randn(bsz, channels, npoint, generator=gen)
    src_gpu = src.to(cuda).requires_grad_()
    src_cpu = src.requires_grad_()
    interp = point_ops_cpu.three_interpolate(src_cpu, nn_idx, weight)
    interp_gpu = mmcv_ops.three_interpolate(src_gpu, nn_idx.to(cuda),
                                            weight.to(cuda))
    assert torch.allclose(interp, interp_gpu.cpu(), atol=1e-5)
    interp.sum().backward()
    interp_gpu.sum().backward()
    assert torch.allclose(src_cpu.grad, src_gpu.grad.cpu(), atol=1e-4)
