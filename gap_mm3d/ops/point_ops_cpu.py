"""Pure-torch implementations of mmcv's PointNet++ point operators.

mmcv 2.1.0 ships these operators as CUDA kernels only. The functions here
reproduce the definitions of those kernels (``mmcv/ops/csrc/common/cuda/
*_cuda_kernel.cuh``) with vectorised torch code, so that they run on the CPU
(and, being plain torch, on any other device too). Each one has the
signature, output shape, dtype, index convention and edge-case behaviour of
its mmcv namesake; the differences are listed in the docstrings under
``Note:``.

The comparison arithmetic follows the kernels' operation order
(``dx * dx + dy * dy + dz * dz`` summed left to right, radii squared in
float32), so on the CPU the results agree bit for bit with a scalar
reference. Where a kernel's parallel reduction decides between equal
values (furthest point sampling), the same order is followed. CUDA kernels
may fuse multiply-adds, so a point lying exactly on a ball's boundary can,
rarely, be classified differently there.

Use the functions of :mod:`gap_mm3d.ops.dispatch` rather than these ones
directly: they pick these implementations for CPU tensors and mmcv's kernels
for CUDA tensors.
"""
import math
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

# Upper bound on the number of elements of the (batch, centres, points)
# temporaries built by ``ball_query`` and ``three_nn``: 1M elements, i.e.
# 4 MiB per float32 temporary. Measured faster than 4M: buffers this small
# stay in malloc's heap instead of being mapped afresh (and page-faulted)
# on every call.
_CHUNK_NUMEL = 1 << 20

# The initial value of mmcv's FPS ``temp`` buffer and of three_nn's "best"
# distances; kept so that the degenerate cases agree with the kernels.
_FPS_INIT = 1e10
_THREE_NN_INIT = 1e40


def _to_compute_dtype(t: Tensor) -> Tensor:
    """Upcast half precision coordinates to float32, keep float32/64."""
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.float()
    return t


def _float32_square(value: float) -> float:
    """Square ``value`` in float32, as the CUDA kernels do."""
    return torch.tensor(value, dtype=torch.float32).square().item()


def _chunk_size(rows: int, per_row: int) -> int:
    """Number of rows whose ``per_row`` elements fit into one chunk."""
    return max(1, min(rows, _CHUNK_NUMEL // max(per_row, 1)))


def _squared_dist(centres_t: Tensor,
                  points_t: Tensor,
                  workspace: Optional[Tensor] = None) -> Tensor:
    """Squared distances in the kernels' operation order.

    Both point sets are coordinate-major, which keeps the broadcast
    subtractions on torch's fast, contiguous path.

    Args:
        centres_t (Tensor): (B, 3, M) query points.
        points_t (Tensor): (B, 3, N) reference points.
        workspace (Tensor, optional): Flat buffer of at least
            ``2 * B * M * N`` elements to compute in, reused across chunks
            (fresh large allocations cost page faults). Defaults to None.

    Returns:
        Tensor: (B, M, N) ``dx * dx + dy * dy + dz * dz``, a view of
        ``workspace`` when given.
    """
    shape = (centres_t.size(0), centres_t.size(2), points_t.size(2))
    numel = shape[0] * shape[1] * shape[2]
    if workspace is None:
        workspace = _new_workspace(centres_t, points_t, numel)
    dist2 = workspace[:numel].view(shape)
    diff = workspace[numel:2 * numel].view(shape)
    torch.sub(centres_t[:, 0, :, None], points_t[:, None, 0], out=dist2)
    dist2.mul_(dist2)
    for axis in (1, 2):
        torch.sub(
            centres_t[:, axis, :, None], points_t[:, None, axis], out=diff)
        dist2.add_(diff.mul_(diff))
    return dist2


def _new_workspace(centres: Tensor, points_t: Tensor, numel: int) -> Tensor:
    """A flat buffer for :func:`_squared_dist` of ``numel`` distances."""
    dtype = torch.promote_types(centres.dtype, points_t.dtype)
    return torch.empty(2 * numel, dtype=dtype, device=centres.device)


def _fps_block_size(num_rows: int) -> int:
    """Threads per block of mmcv's FPS kernels for ``num_rows`` points.

    mmcv launches one block per batch element with ``2 ** floor(log2(N))``
    threads, clamped to [1, 1024] (``opt_n_threads`` in
    ``furthest_point_sample_cuda.cu``).
    """
    # int(): under a jit trace (FLOPs counting) a size is a 0-dim tensor
    return min(1 << max(int(num_rows).bit_length() - 1, 0), 1024)


def _fps_tie_order(num_rows: int, device: torch.device) -> Tensor:
    """The point indices in the priority order of mmcv's FPS tie-breaking.

    In each step of mmcv's kernel thread ``t`` of the ``T`` threads (see
    :func:`_fps_block_size`) scans the points ``k = t, t + T, t + 2T, ...``
    and keeps the first one with the largest distance; a shared-memory tree
    reduction then merges slot ``s + h`` into slot ``s`` for ``h = T / 2,
    T / 4, ..., 1``, keeping slot ``s`` on equal values. So on a tie the
    last merge (``h = 1``) prefers a thread with bit 0 clear, the merge
    before it (``h = 2``) one with bit 1 clear, and so on: of the tied
    threads, the one whose ``log2(T)``-bit reversed id is smallest wins
    (not the lowest id). A point's priority is therefore
    ``(bit_reverse(k % T), k // T)``, smallest first, and the first maximum
    of the distances listed in this order is the kernel's pick.

    Args:
        num_rows (int): Number of points N.
        device (torch.device): Device of the result.

    Returns:
        Tensor: (N, ) int64 permutation of ``range(N)``; ``order[0] == 0``.
    """
    block = _fps_block_size(num_rows)
    bits = block.bit_length() - 1
    rank = torch.arange(block, device=device)
    # Bit reversal is its own inverse: the thread of rank r is bitrev(r).
    thread = torch.zeros_like(rank)
    for bit in range(bits):
        thread |= ((rank >> bit) & 1) << (bits - 1 - bit)
    per_thread = -(-num_rows // block)
    order = thread[:, None] + block * torch.arange(per_thread, device=device)
    order = order.flatten()
    return order[order < num_rows]


def _nan_to_inf(dist: Tensor) -> Tensor:
    """Replace NaN distances by +inf, in place.

    CUDA's ``min(float, float)`` (``fminf``) returns the other operand when
    one is NaN, so in mmcv's kernels a NaN distance leaves ``temp`` as it
    was; ``torch.minimum`` would spread the NaN, a +inf does not.
    (``torch.fmin`` has the kernel's rule but is some 20 times slower on
    the CPU than ``nan_to_num`` and ``minimum`` together.)
    """
    return torch.nan_to_num(
        dist, nan=math.inf, posinf=math.inf, neginf=-math.inf, out=dist)


def _furthest_point_sample_loop(
        num_points: int, batch_size: int, order: Tensor,
        row_dist: Callable[[Tensor], Tensor]) -> Tensor:
    """The shared FPS iteration, batched over the batch dimension.

    The points are held in the tie order of mmcv's kernel (``order``, see
    :func:`_fps_tie_order`), so that a first-maximum ``argmax`` picks what
    the kernel picks; the positions are mapped back to indices at the end.

    Args:
        num_points (int): Number of indices to pick.
        batch_size (int): Batch size B.
        order (Tensor): (N, ) the points' tie order.
        row_dist (Callable[[Tensor], Tensor]): Maps the (B, 1) positions in
            ``order`` of the last picked points to the (B, N) float32
            distances from them to all points, listed in ``order``, with
            +inf for NaN (see :func:`_nan_to_inf`) and none below -1 (see
            :func:`furthest_point_sample_with_dist`).

    Returns:
        Tensor: (B, num_points) int32 indices.
    """
    num_rows = order.numel()
    picked = torch.zeros(
        batch_size, num_points, dtype=torch.long, device=order.device)
    if num_points <= 1 or num_rows == 0:
        return picked.int()
    min_dist = torch.full((batch_size, num_rows),
                          _FPS_INIT,
                          dtype=torch.float32,
                          device=order.device)
    last = picked[:, :1]
    for j in range(1, num_points):
        torch.minimum(min_dist, row_dist(last), out=min_dist)
        # argmax returns the first maximal position on ties.
        last = min_dist.argmax(dim=1, keepdim=True)
        picked[:, j:j + 1] = last
    return order[picked].int()


@torch.no_grad()
def furthest_point_sample(points_xyz: Tensor, num_points: int) -> Tensor:
    """Furthest point sampling, as ``mmcv.ops.furthest_point_sample``.

    Starts at index 0 and then repeatedly picks the point whose squared
    distance to the already picked set is largest. As in mmcv's kernel, the
    distances are float32, ``dx * dx + dy * dy + dz * dz`` summed left to
    right, and start at 1e10; as CUDA's ``min`` does, the minimum with a NaN
    distance keeps the other value.

    Ties are broken as the kernel's thread layout and reduction break them:
    with ``T = min(2 ** floor(log2(N)), 1024)`` threads, of the points
    with the largest distance the one whose ``k % T`` has the smallest
    ``log2(T)``-bit reversal wins, then the smallest ``k`` (see
    :func:`_fps_tie_order`). For example with N = 3 (T = 2) and points 1
    and 2 equally far, point 2 is picked.

    Args:
        points_xyz (Tensor): (B, N, 3) coordinates. Any floating dtype; like
            mmcv's kernel, which reads float32 only, the sampling runs on
            the float32 copy (so float64 input picks what its float32
            rounding picks).
        num_points (int): Number of points to sample. May exceed N; the
            extra picks are then index 0, as in mmcv.

    Returns:
        Tensor: (B, num_points) int32 indices of the sampled points.

    Note:
        The result matches the kernel's arithmetic as written, without
        contracting multiply-adds. nvcc contracts them into FMAs by
        default, which can change the last bit of a distance whose squares
        are not exact in float32, and so the pick between two points whose
        distances are equal or within an ulp. With exactly representable
        squares and sums (small integer or dyadic coordinates, duplicated
        points) the two agree index for index.
    """
    assert points_xyz.dim() == 3 and points_xyz.size(2) == 3, \
        f'points_xyz must be (B, N, 3), but got {tuple(points_xyz.shape)}'
    points = points_xyz.float()
    batch_size, num_rows = points.shape[:2]
    order = _fps_tie_order(num_rows, points.device)
    # (B, 3, N) in the tie order, once: the loop itself costs nothing more.
    points_t = points.transpose(1, 2).index_select(2, order).contiguous()
    buffer = torch.empty_like(points_t)
    # Only a NaN or infinite coordinate makes a NaN distance (NaN - x,
    # inf - inf); checked once, so finite input costs nothing per step.
    finite = bool(torch.isfinite(points_t).all())

    def row_dist(last: Tensor) -> Tensor:
        centre = points_t.gather(2, last.view(-1, 1, 1).expand(-1, 3, 1))
        diff = torch.sub(points_t, centre, out=buffer)
        diff.mul_(diff)
        dist = diff[:, 0].add(diff[:, 1]).add_(diff[:, 2])
        return dist if finite else _nan_to_inf(dist)

    return _furthest_point_sample_loop(num_points, batch_size, order, row_dist)


@torch.no_grad()
def furthest_point_sample_with_dist(points_dist: Tensor,
                                    num_points: int) -> Tensor:
    """FPS on distances, as ``mmcv.ops.furthest_point_sample_with_dist``.

    Row ``i`` of ``points_dist`` gives the distances from point ``i``; the
    iteration, the float32 arithmetic and the tie rule are those of
    :func:`furthest_point_sample`. As in the kernel, whose best distance
    starts at -1, a step in which no point's minimum distance exceeds -1
    picks index 0.

    Args:
        points_dist (Tensor): (B, N, N) distances between each point pair.
            Any floating dtype; the sampling runs on the float32 copy, as
            in mmcv's kernel.
        num_points (int): Number of points to sample.

    Returns:
        Tensor: (B, num_points) int32 indices of the sampled points.
    """
    assert points_dist.dim() == 3 and \
        points_dist.size(1) == points_dist.size(2), \
        f'points_dist must be (B, N, N), but got {tuple(points_dist.shape)}'
    batch_size, num_rows = points_dist.shape[:2]
    dist = points_dist.float().reshape(batch_size, num_rows * num_rows)
    order = _fps_tie_order(num_rows, dist.device)
    index = torch.empty(
        batch_size, num_rows, dtype=torch.long, device=dist.device)

    def row_dist(last: Tensor) -> Tensor:
        # Row order[last], its columns in the tie order: one gather.
        torch.add(order, order[last] * num_rows, out=index)
        # The kernel's best starts at -1, so a distance <= -1 never wins,
        # and a step with no distance above -1 picks index 0. Clamping the
        # distances at -1 does the same: max(min(d, t), -1) equals
        # min(max(d, -1), max(t, -1)), so the minima are those of the
        # kernel clamped at -1, and a row of -1s picks position 0, index 0.
        return _nan_to_inf(dist.gather(1, index)).clamp_(min=-1.)

    return _furthest_point_sample_loop(num_points, batch_size, order, row_dist)


@torch.no_grad()
def ball_query(min_radius: float,
               max_radius: float,
               sample_num: int,
               xyz: Tensor,
               center_xyz: Tensor,
               xyz_batch_cnt: Optional[Tensor] = None,
               center_xyz_batch_cnt: Optional[Tensor] = None) -> Tensor:
    """Ball query, as ``mmcv.ops.ball_query``.

    Point ``k`` belongs to the ball of a centre when its squared distance
    ``d2`` satisfies ``d2 == 0 or min_radius**2 <= d2 < max_radius**2``
    (radii squared in float32). The first ``sample_num`` such points, in
    index order, fill the output row; when fewer are found the rest of the
    row repeats the first one found, and a row with none is all zeros.

    Args:
        min_radius (float): Minimum radius of the balls.
        max_radius (float): Maximum radius of the balls.
        sample_num (int): Maximum number of points in each ball.
        xyz (Tensor): (B, N, 3) coordinates of the points.
        center_xyz (Tensor): (B, npoint, 3) centres of the balls.
        xyz_batch_cnt (Tensor, optional): mmcv's stacked-input variant;
            not supported here. Defaults to None.
        center_xyz_batch_cnt (Tensor, optional): Likewise. Defaults to None.

    Returns:
        Tensor: (B, npoint, sample_num) int32 indices into ``xyz``.
    """
    if xyz_batch_cnt is not None or center_xyz_batch_cnt is not None:
        raise NotImplementedError(
            'The stacked (batch_cnt) variant of ball_query has no CPU '
            'implementation.')
    assert min_radius < max_radius, \
        f'min_radius must be < max_radius, but got {min_radius} and ' \
        f'{max_radius}'
    batch_size, num_rows = xyz.shape[:2]
    num_centres = center_xyz.size(1)
    out = torch.zeros(
        batch_size,
        num_centres,
        sample_num,
        dtype=torch.int32,
        device=xyz.device)
    if num_rows == 0 or num_centres == 0 or sample_num == 0:
        return out
    min_r2 = _float32_square(min_radius)
    max_r2 = _float32_square(max_radius)
    points_t = xyz.transpose(1, 2).contiguous()  # (B, 3, N)
    centres_t = center_xyz.transpose(1, 2).contiguous()  # (B, 3, npoint)
    slots = torch.arange(sample_num, device=xyz.device)
    step = _chunk_size(num_centres, batch_size * num_rows)
    workspace = _new_workspace(center_xyz, points_t,
                               batch_size * step * num_rows)
    for start in range(0, num_centres, step):
        stop = min(start + step, num_centres)
        dist2 = _to_compute_dtype(
            _squared_dist(centres_t[:, :, start:stop], points_t, workspace))
        if min_r2 > 0:
            mask = dist2.ge(min_r2).logical_and_(dist2.lt(max_r2))
            mask.logical_or_(dist2.eq(0))
        elif max_r2 > 0:
            mask = dist2.lt(max_r2)  # d2 == 0 is inside already
        else:
            mask = dist2.eq(0)
        del dist2
        mask = mask.view(-1, num_rows)  # one row per (batch, centre)
        # nonzero lists each row's hits in ascending index order; the rank
        # of a hit within its row is its position minus the row's offset.
        rows, cols = mask.nonzero(as_tuple=True)
        counts = torch.bincount(rows, minlength=mask.size(0))
        del mask
        offsets = counts.cumsum(0).sub_(counts)
        rank = torch.arange(rows.numel(), device=xyz.device)
        rank.sub_(offsets[rows])
        keep = rank < sample_num
        chunk = cols.new_zeros(counts.numel(), sample_num)
        chunk[rows[keep], rank[keep]] = cols[keep]
        chunk = torch.where(slots < counts[:, None], chunk, chunk[:, :1])
        out[:, start:stop] = chunk.view(batch_size, -1, sample_num)
    return out


def grouping_operation(features: Tensor,
                       indices: Tensor,
                       features_batch_cnt: Optional[Tensor] = None,
                       indices_batch_cnt: Optional[Tensor] = None) -> Tensor:
    """Group features by indices, as ``mmcv.ops.grouping_operation``.

    ``out[b, c, m, s] = features[b, c, indices[b, m, s]]``. Differentiable
    with respect to ``features``.

    Args:
        features (Tensor): (B, C, N) features.
        indices (Tensor): (B, npoint, nsample) int32 or int64 indices.
        features_batch_cnt (Tensor, optional): mmcv's stacked-input
            variant; not supported here. Defaults to None.
        indices_batch_cnt (Tensor, optional): Likewise. Defaults to None.

    Returns:
        Tensor: (B, C, npoint, nsample) grouped features.
    """
    if features_batch_cnt is not None or indices_batch_cnt is not None:
        raise NotImplementedError(
            'The stacked (batch_cnt) variant of grouping_operation has no '
            'CPU implementation.')
    batch_size, channels = features.shape[:2]
    _, num_centres, num_samples = indices.shape
    index = indices.reshape(batch_size, 1, -1).long()
    index = index.expand(-1, channels, -1)
    grouped = features.gather(2, index)
    return grouped.view(batch_size, channels, num_centres, num_samples)


def gather_points(features: Tensor, indices: Tensor) -> Tensor:
    """Gather features by indices, as ``mmcv.ops.gather_points``.

    ``out[b, c, m] = features[b, c, indices[b, m]]``. Differentiable with
    respect to ``features``.

    Args:
        features (Tensor): (B, C, N) features.
        indices (Tensor): (B, M) int32 or int64 indices.

    Returns:
        Tensor: (B, C, M) gathered features.
    """
    index = indices.long().unsqueeze(1).expand(-1, features.size(1), -1)
    return features.gather(2, index)


def _three_smallest_by_min(dist: Tensor) -> Tuple[Tensor, Tensor]:
    """Three smallest values along the last dim by repeated ``min``.

    Exact on ties (``min`` returns the first minimal index). Overwrites
    ``dist``. Missing values (fewer than 3 columns) come out as ``(inf,
    0)``.
    """
    values, indices = [], []
    for k in range(3):
        if dist.size(-1) == 0:
            best = dist.new_full(dist.shape[:-1], float('inf'))
            best_idx = torch.zeros_like(best, dtype=torch.long)
        else:
            best, best_idx = dist.min(dim=-1)
            if k < 2:
                dist.scatter_(-1, best_idx.unsqueeze(-1), float('inf'))
        values.append(best)
        indices.append(best_idx)
    return torch.stack(values, dim=-1), torch.stack(indices, dim=-1)


def _three_smallest(dist: Tensor) -> Tuple[Tensor, Tensor]:
    """Three smallest values and their indices along the last dim.

    The order is that of mmcv's insertion in its kernel: ascending, and on
    equal values the smaller index first. One ``topk`` gives the answer
    wherever the four smallest values are distinct; the rows with a tie are
    redone exactly. May overwrite ``dist``.

    Args:
        dist (Tensor): (..., M) squared distances.

    Returns:
        tuple[Tensor, Tensor]: (..., 3) values and int64 indices.
    """
    if dist.size(-1) < 4:
        return _three_smallest_by_min(dist)
    values, indices = dist.topk(4, dim=-1, largest=False, sorted=True)
    tied = (values[..., 1:] == values[..., :-1]).any(dim=-1)
    values, indices = values[..., :3], indices[..., :3]
    if tied.any():
        values[tied], indices[tied] = _three_smallest_by_min(dist[tied])
    return values, indices


@torch.no_grad()
def three_nn(target: Tensor, source: Tensor) -> Tuple[Tensor, Tensor]:
    """Three nearest neighbours, as ``mmcv.ops.three_nn``.

    Args:
        target (Tensor): (B, N, 3) points whose neighbours are wanted.
        source (Tensor): (B, M, 3) points to pick the neighbours from.

    Returns:
        tuple[Tensor, Tensor]:

        - dist (Tensor): (B, N, 3) Euclidean distances (the square root of
          the squared distances, as mmcv returns them) to the neighbours,
          in ascending order; equal distances keep index order.
        - idx (Tensor): (B, N, 3) int32 indices into ``source``.

    Note:
        When M < 3, the missing neighbours get index 0 and distance
        ``sqrt(1e40)`` (``inf`` in float32), as in mmcv. Like mmcv, the
        distances carry no gradient.
    """
    batch_size, num_targets = target.shape[:2]
    num_sources = source.size(1)
    dist2 = target.new_empty(batch_size, num_targets, 3)
    idx = torch.zeros(
        batch_size, num_targets, 3, dtype=torch.int32, device=target.device)
    if num_targets == 0:
        return dist2, idx
    source_t = source.transpose(1, 2).contiguous()  # (B, 3, M)
    target_t = target.transpose(1, 2).contiguous()  # (B, 3, N)
    fill = torch.tensor(_THREE_NN_INIT, dtype=target.dtype)
    step = _chunk_size(num_targets, batch_size * num_sources)
    workspace = _new_workspace(target, source_t,
                               batch_size * step * num_sources)
    for start in range(0, num_targets, step):
        stop = min(start + step, num_targets)
        dist = _squared_dist(target_t[:, :, start:stop], source_t, workspace)
        best, best_idx = _three_smallest(dist)
        valid = best < fill
        dist2[:, start:stop] = torch.where(valid, best, fill)
        idx[:, start:stop] = best_idx.masked_fill_(~valid, 0)
    if dist2.dtype != torch.float64:
        # torch's vectorised float32 sqrt on the CPU is not always correctly
        # rounded (CUDA's is); via float64 it is.
        return dist2.double().sqrt_().to(dist2.dtype), idx
    return dist2.sqrt_(), idx


def three_interpolate(features: Tensor, indices: Tensor,
                      weight: Tensor) -> Tensor:
    """Three-neighbour interpolation, as ``mmcv.ops.three_interpolate``.

    ``out[b, c, n] = sum_k weight[b, n, k] * features[b, c, indices[b, n,
    k]]``, summed over k = 0, 1, 2 in that order.

    Args:
        features (Tensor): (B, C, M) features of the source points.
        indices (Tensor): (B, N, 3) int32 or int64 indices into M.
        weight (Tensor): (B, N, 3) interpolation weights.

    Returns:
        Tensor: (B, C, N) interpolated features.

    Note:
        Differentiable with respect to ``features`` and also ``weight``.
        mmcv's kernel returns no gradient for ``weight``. In PointNet++ the
        weights come from :func:`three_nn` distances, which carry no
        gradient on either backend, so training is the same on both.
    """
    channels = features.size(1)
    # Neighbour-major (B, 3, N) copies keep the gathers and products below
    # contiguous, which halves the time.
    index = indices.long().transpose(1, 2).contiguous()
    weight = weight.transpose(1, 2).contiguous()
    out = None
    for k in range(3):
        picked = features.gather(2, index[:, None, k].expand(-1, channels, -1))
        # In place: every fresh (B, C, N) buffer costs page faults.
        term = picked.mul_(weight[:, None, k])
        out = term if out is None else out.add_(term)
    return out
