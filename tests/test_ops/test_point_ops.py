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


def _fminf(a, b):
    """CUDA's ``min(float, float)`` (fminf): a NaN operand yields the
    other."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a < b else b


def kernel_block_size(n):
    """``opt_n_threads`` of mmcv's furthest_point_sample_cuda.cu, as
    written (a double-precision log2, truncated)."""
    pow_2 = int(math.log(n) / math.log(2.0))
    return max(min(1 << pow_2, 1024), 1)


def ref_fps_kernel(row_fn, n, num_points):
    """mmcv's FPS kernel for one batch element, simulated thread by thread.

    ``T`` threads; in each step thread ``tid`` scans ``k = tid, tid + T,
    ...``, updates ``temp`` and keeps its first largest ``d2`` (best starts
    at -1, besti at 0); then the shared-memory tree reduction over
    ``block_size_thres = 1024, 512, ..., 2`` with ``__update`` keeping the
    lower slot unless the upper one is strictly larger.

    Args:
        row_fn (Callable): ``row_fn(old)`` gives the n float32 distances
            (python floats) from point ``old`` to every point.
        n (int): Number of points.
        num_points (int): Number of indices to pick.
    """
    out = [0] * num_points
    if n == 0:
        return out
    block = kernel_block_size(n)
    temp = [float(np.float32(1e10))] * n
    old = 0
    for j in range(1, num_points):
        row = row_fn(old)
        dists, dists_i = [0.0] * block, [0] * block
        for tid in range(block):
            best, besti = -1.0, 0
            for k in range(tid, n, block):
                d2 = _fminf(row[k], temp[k])
                temp[k] = d2
                besti = k if d2 > best else besti
                best = d2 if d2 > best else best
            dists[tid], dists_i[tid] = best, besti
        thres = 1024
        while thres >= 2:
            half = thres // 2
            if block >= thres:
                # Threads tid < half run at once; none reads a slot that
                # another one writes, so this sequential loop is exact.
                for tid in range(half):
                    v1, v2 = dists[tid], dists[tid + half]
                    i1, i2 = dists_i[tid], dists_i[tid + half]
                    dists[tid] = max(v1, v2)  # the values are never NaN
                    dists_i[tid] = i2 if v2 > v1 else i1
            thres //= 2
        old = dists_i[0]
        out[j] = old
    return out


def _xyz_rows(p):
    """Kernel-order float32 squared distances from point ``old``."""
    p = p.astype(np.float32)

    def row_fn(old):
        with np.errstate(invalid='ignore', over='ignore'):  # NaN, inf
            d = [p[:, axis] - p[old, axis] for axis in range(3)]
            return (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).tolist()

    return row_fn


def ref_fps(points, num_points):
    return [
        ref_fps_kernel(_xyz_rows(p), len(p), num_points)
        for p in points.numpy()
    ]


def ref_fps_with_dist(dist, num_points):
    return [
        ref_fps_kernel(lambda i, m=m: m[i].tolist(), len(m), num_points)
        for m in dist.float().numpy()
    ]


def fps_lowest_index(points, num_points):
    """FPS with ties to the lowest index (the rule we used to follow)."""
    out = []
    for p in points.float().numpy():
        row_fn = _xyz_rows(p)
        temp = np.full(len(p), 1e10, np.float32)
        picks = [0]
        for _ in range(1, num_points):
            temp = np.minimum(temp, row_fn(picks[-1]))
            picks.append(int(np.argmax(temp)))
        out.append(picks)
    return out


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


def test_fps_block_size_and_tie_order():
    for n in list(range(1, 2100)) + [4095, 4096, 10**5]:
        assert point_ops_cpu._fps_block_size(n) == kernel_block_size(n), n
    assert point_ops_cpu._fps_block_size(0) == 1
    # 8 threads: thread priority by reversed 3-bit id 0, 4, 2, 6, 1, 5, 3,
    # 7; within a thread, its points k = tid, tid + 8 in order.
    assert point_ops_cpu._fps_tie_order(12, torch.device('cpu')).tolist() == \
        [0, 8, 4, 2, 10, 6, 1, 9, 5, 3, 11, 7]
    for n in (0, 1, 2, 3, 600, 1024, 3000):
        order = point_ops_cpu._fps_tie_order(n, torch.device('cpu'))
        assert sorted(order.tolist()) == list(range(n))


def _tied_points(kind, bsz, n, seed):
    """Inputs with many exact float32 ties.

    Every square and sum of the distances is exact in float32 (integer
    coordinates, or multiples of 1/256 in [0, 1)), so a GPU's fused
    multiply-adds give the same distances and the same ties.
    """
    if kind == 'grid':  # 216 integer cells
        return grid_points(bsz, n, seed, size=6)
    # random points, each repeated about three times in random places
    gen = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (bsz, n // 3, 3), generator=gen) / 256
    pick = torch.randint(0, n // 3, (bsz, n), generator=gen)
    return base.gather(1, pick[..., None].expand(-1, -1, 3))


@pytest.mark.parametrize('kind', ['grid', 'duplicates'])
@pytest.mark.parametrize('n', [600, 1024, 1500, 2048, 3000])
def test_fps_breaks_ties_like_the_kernel(kind, n):
    # The grid has 216 cells, so 240 samples also run past the distinct
    # points (where every distance is 0).
    num_points = 240 if kind == 'grid' else 64
    points = _tied_points(kind, 3, n, seed=n)
    out = point_ops_cpu.furthest_point_sample(points, num_points)
    assert out.dtype == torch.int32 and out.shape == (3, num_points)
    expected = ref_fps(points, num_points)
    assert out.tolist() == expected
    # the ties matter: the lowest-index rule picks differently
    assert fps_lowest_index(points, num_points) != expected


@pytest.mark.parametrize('n,num_points', [(1, 4), (2, 5), (3, 6), (5, 9),
                                          (7, 10), (8, 12), (9, 14), (33, 40)])
def test_fps_ties_small_n(n, num_points):
    points = grid_points(4, n, seed=n, size=2)
    out = point_ops_cpu.furthest_point_sample(points, num_points)
    assert out.tolist() == ref_fps(points, num_points)


def test_fps_with_dist_ties_and_negative_distances():
    points = grid_points(2, 1500, seed=22, size=6)
    diff = points[:, :, None] - points[:, None]
    dist = diff.square().sum(-1)  # exact integers: ties everywhere
    out = point_ops_cpu.furthest_point_sample_with_dist(dist, 48)
    assert out.tolist() == ref_fps_with_dist(dist, 48)
    assert torch.equal(out, point_ops_cpu.furthest_point_sample(points, 48))
    # The kernel's best starts at -1: a step whose distances are all <= -1
    # picks index 0, whatever the order.
    gen = torch.Generator().manual_seed(23)
    dist = torch.randint(-4, 2, (3, 600, 600), generator=gen).float()
    dist[0, :, 7] = -math.inf
    dist[1, 0, 9] = math.inf
    dist[2] = -1.
    out = point_ops_cpu.furthest_point_sample_with_dist(dist, 20)
    assert out.tolist() == ref_fps_with_dist(dist, 20)
    assert (out[2] == 0).all()


def test_fps_nan_like_the_kernel():
    # CUDA's min(NaN, temp) keeps temp: a NaN point stays at 1e10 and is
    # picked again and again, its NaN distances changing nothing. So is an
    # infinite one (its distance to itself is inf - inf).
    points = grid_points(3, 700, seed=24, size=6)
    points[0, 5, 1] = math.nan
    points[1, 9, 0] = math.inf
    out = point_ops_cpu.furthest_point_sample(points, 12)
    assert out.tolist() == ref_fps(points, 12)
    assert out[0, 1:].tolist() == [5] * 11
    assert out[1, 1:].tolist() == [9] * 11
    assert out[2].tolist() == ref_fps(points[2:], 12)[0]
    dist = (points[:, :, None] - points[:, None]).square().sum(-1)
    dist[1, 3, 7] = math.nan
    out = point_ops_cpu.furthest_point_sample_with_dist(dist, 12)
    assert out.tolist() == ref_fps_with_dist(dist, 12)


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


def test_fps_float64_samples_the_float32_copy():
    # mmcv's kernels read float32 only, so every backend samples the
    # float32 copy. Point 1 is further than point 2 in float64, but both
    # are at distance 1 in float32; the kernel's tie rule (N = 3: two
    # threads, thread 0 holding points 0 and 2) then picks point 2.
    points = torch.tensor(
        [[[0., 0., 0.], [1 + 2**-30, 0., 0.], [-1., 0., 0.]]],
        dtype=torch.float64)
    assert (points[0, 1, 0] - points[0, 0, 0])**2 > 1
    for fps in (point_ops_cpu.furthest_point_sample,
                dispatch.furthest_point_sample):
        out = fps(points, 3)
        assert out.dtype == torch.int32 and out.tolist() == [[0, 2, 1]]
    dist = (points[:, :, None] - points[:, None]).square().sum(-1)
    for fps in (point_ops_cpu.furthest_point_sample_with_dist,
                dispatch.furthest_point_sample_with_dist):
        assert fps(dist, 3).tolist() == [[0, 2, 1]]
    # random float64 points: the indices of their float32 rounding
    points = rand_points(2, 300, seed=4).double().add_(1e-9)
    out64 = point_ops_cpu.furthest_point_sample(points, 40)
    assert out64.tolist() == ref_fps(points.float(), 40)
    assert torch.equal(out64,
                       point_ops_cpu.furthest_point_sample(points.float(), 40))
    assert torch.equal(
        point_ops_cpu.furthest_point_sample(points.half(), 40),
        point_ops_cpu.furthest_point_sample(points.half().float(), 40))


def test_fps_zero_points_and_no_gradient():
    points = rand_points(1, 20, seed=4)
    assert point_ops_cpu.furthest_point_sample(points, 0).shape == (1, 0)
    assert point_ops_cpu.furthest_point_sample(points[:, :0],
                                               3).tolist() == [[0, 0, 0]]
    assert point_ops_cpu.furthest_point_sample_with_dist(
        torch.zeros(2, 0, 0), 2).tolist() == [[0, 0], [0, 0]]
    # like mmcv's (non-differentiable) output, whatever the input needs
    out = point_ops_cpu.furthest_point_sample(points.requires_grad_(), 5)
    assert not out.requires_grad and out.grad_fn is None


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
    # Exact ties, whose distances FMA contraction cannot change: the same
    # indices, for N below, at and above the kernel's 1024 threads.
    for n in (600, 1024, 1500, 2048, 3000):
        for kind in ('grid', 'duplicates'):
            tied = _tied_points(kind, 3, n, seed=n).contiguous()
            ours = point_ops_cpu.furthest_point_sample(tied, 240)
            theirs = mmcv_ops.furthest_point_sample(tied.to(cuda), 240)
            assert torch.equal(ours, theirs.cpu()), (kind, n)
            # the pure-torch code on the GPU, and float64 via dispatch
            assert torch.equal(
                point_ops_cpu.furthest_point_sample(tied.to(cuda), 240).cpu(),
                ours)
            assert torch.equal(
                dispatch.furthest_point_sample(tied.double().to(cuda),
                                               240).cpu(), ours)
        grid = _tied_points('grid', 3, n, seed=n)
        grid_dist = (grid[:, :, None] - grid[:, None]).square().sum(-1)
        assert torch.equal(
            point_ops_cpu.furthest_point_sample_with_dist(grid_dist, 64),
            mmcv_ops.furthest_point_sample_with_dist(
                grid_dist.contiguous().to(cuda), 64).cpu()), n

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
