"""Time the PointNet++ point operators at PointNet++ SSG part-seg sizes.

Prints the median wall time of each operator against the number of input
points N and the batch size B, at the sizes of the SSG part-segmentation
network: SA1 samples 512 centres from N points with radius 0.2 and 32
neighbours, SA2 samples 128 centres from 512 with radius 0.4 and 64
neighbours, and the FP layers interpolate back (128 -> 512 -> N).

The points lie on a sphere of radius 0.5, where a 0.2-ball holds about 4%
of them, so the 32-neighbour balls of SA1 are full at N = 2048.

Examples:
    python benchmarks/bench_point_ops.py            # CPU, pure torch
    python benchmarks/bench_point_ops.py --quick    # fewer sizes
    python benchmarks/bench_point_ops.py --threads 1  # on a shared machine
    python benchmarks/bench_point_ops.py --device cuda  # mmcv's kernels
    python benchmarks/bench_point_ops.py --device cuda --impl torch
"""
import argparse
import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple

import torch

from gap_mm3d.ops import dispatch, point_ops_cpu

# The set-abstraction stages of PointNet++ SSG part-seg. ``channels`` are
# the grouped features: normals + xyz for SA1, SA1's 128 + xyz for SA2.
SA1 = dict(npoint=512, radius=0.2, nsample=32, channels=6)
SA2 = dict(npoint=128, radius=0.4, nsample=64, channels=131)
FP1_CHANNELS = 128  # features interpolated 512 -> N
FP2_CHANNELS = 256  # features interpolated 128 -> 512


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--quick', action='store_true', help='fewer sizes and repeats')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument(
        '--impl',
        choices=['dispatch', 'torch'],
        default='dispatch',
        help='dispatch: gap_mm3d.ops (mmcv kernels on CUDA); torch: the '
        'pure-torch code on any device')
    parser.add_argument('--repeats', type=int, help='timed runs per entry')
    parser.add_argument(
        '--threads', type=int, default=2, help='torch CPU threads')
    return parser.parse_args()


def sphere_points(batch: int, num: int, device: torch.device,
                  gen: torch.Generator) -> torch.Tensor:
    """(B, N, 3) float32 points on a sphere of radius 0.5."""
    points = torch.randn(batch, num, 3, generator=gen)
    points = 0.5 * points / points.norm(dim=-1, keepdim=True)
    return points.to(device).contiguous()


def median_ms(fns: Sequence[Callable[[], object]], repeats: int,
              device: torch.device) -> List[Tuple[float, float, float]]:
    """Median, min and max wall time of each ``fn()`` in milliseconds.

    Every function runs once to warm up, then the functions take turns for
    ``repeats`` rounds, so that a burst of load from other processes spoils
    one sample of many entries instead of all samples of one.
    """

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    for fn in fns:
        fn()
    sync()
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, samples in zip(fns, times):
            start = time.perf_counter()
            fn()
            sync()
            samples.append((time.perf_counter() - start) * 1e3)
    return [(statistics.median(samples), min(samples), max(samples))
            for samples in times]


def stage_cases(ops, xyz: torch.Tensor, npoint: int, radius: float,
                nsample: int, channels: int, interp_channels: int,
                gen: torch.Generator) -> List[Tuple[str, Callable]]:
    """Timed closures for one set-abstraction stage and its FP layer.

    Args:
        ops (module): Namespace with the operator functions.
        xyz (torch.Tensor): (B, N, 3) input points of the stage.
        npoint (int): Number of centres sampled by FPS.
        radius (float): Ball query radius.
        nsample (int): Neighbours per ball.
        channels (int): Channels of the grouped features.
        interp_channels (int): Channels interpolated back by the FP layer.
        gen (torch.Generator): Source of the random features.

    Returns:
        list[tuple[str, Callable]]: (label, closure) pairs.
    """
    batch, num = xyz.shape[:2]
    device = xyz.device
    xyz_t = xyz.transpose(1, 2).contiguous()
    fps_idx = ops.furthest_point_sample(xyz, npoint)
    centres = ops.gather_points(xyz_t, fps_idx).transpose(1, 2).contiguous()
    ball_idx = ops.ball_query(0., radius, nsample, xyz, centres)
    feats = torch.randn(batch, channels, num, generator=gen).to(device)
    feats.requires_grad_()
    grad_grouped = torch.randn(
        batch, channels, npoint, nsample, generator=gen).to(device)
    dist, nn_idx = ops.three_nn(xyz, centres)
    weight = 1.0 / (dist + 1e-8)
    weight = (weight / weight.sum(dim=2, keepdim=True)).contiguous()
    src = torch.randn(
        batch, interp_channels, npoint, generator=gen).to(device)
    src.requires_grad_()
    grad_interp = torch.randn(
        batch, interp_channels, num, generator=gen).to(device)

    def grouping_fwd_bwd():
        ops.grouping_operation(feats, ball_idx).backward(grad_grouped)

    def interp_fwd_bwd():
        ops.three_interpolate(src, nn_idx, weight).backward(grad_interp)

    return [
        (f'furthest_point_sample {num}->{npoint}',
         lambda: ops.furthest_point_sample(xyz, npoint)),
        (f'gather_points C=3 {num}->{npoint}',
         lambda: ops.gather_points(xyz_t, fps_idx)),
        (f'ball_query r={radius} k={nsample}',
         lambda: ops.ball_query(0., radius, nsample, xyz, centres)),
        (f'grouping_operation C={channels}',
         lambda: ops.grouping_operation(feats.detach(), ball_idx)),
        (f'grouping_operation C={channels} fwd+bwd', grouping_fwd_bwd),
        (f'three_nn {num}<-{npoint}', lambda: ops.three_nn(xyz, centres)),
        (f'three_interpolate C={interp_channels}',
         lambda: ops.three_interpolate(src.detach(), nn_idx, weight)),
        (f'three_interpolate C={interp_channels} fwd+bwd', interp_fwd_bwd),
    ]


def print_table(title: str, columns: Sequence[str],
                rows: Dict[str, List[Tuple[float, float, float]]]) -> None:
    """Print one table of median milliseconds, then the spread (max / min)
    of each entry's runs."""
    width = max(len(label) for label in rows) + 2
    for what, cell in ((title, lambda m: f'{m[0]:12.2f}'),
                       ('spread of the runs (max / min)',
                        lambda m: f'{m[2] / m[1]:11.2f}x')):
        print(f'\n{what}')
        header = 'op'.ljust(width) + ''.join(f'{c:>12}' for c in columns)
        print(header)
        print('-' * len(header))
        for label, values in rows.items():
            print(label.ljust(width) + ''.join(cell(v) for v in values))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ops = point_ops_cpu if args.impl == 'torch' else dispatch
    batches = (1, 8) if args.quick else (1, 8, 16)
    nums = (1024, 2048) if args.quick else (1024, 2048, 4096)
    repeats = args.repeats or (3 if args.quick else 5)
    impl = ('pure torch' if device.type == 'cpu' or args.impl == 'torch' else
            'mmcv kernels')
    print(f'device={device} ({impl}), torch {torch.__version__}, '
          f'{torch.get_num_threads()} CPU threads, median of {repeats} runs '
          f'after a warm-up')
    gen = torch.Generator().manual_seed(0)

    # SA1 and FP1 depend on N: one column per (B, N). SA2 and FP2 always
    # see the 512 SA1 centres: one column per B.
    tables = [('SA1 / FP1 (ms): N points -> 512 centres', SA1, FP1_CHANNELS,
               [(b, n) for b in batches for n in nums]),
              ('SA2 / FP2 (ms): 512 points -> 128 centres', SA2,
               FP2_CHANNELS, [(b, SA1['npoint']) for b in batches])]
    entries = []  # (table, label, column, fn)
    for title, stage, interp_channels, sizes in tables:
        for batch, num in sizes:
            xyz = sphere_points(batch, num, device, gen)
            column = f'B{batch} N{num}' if stage is SA1 else f'B{batch}'
            for label, fn in stage_cases(ops, xyz, stage['npoint'],
                                         stage['radius'], stage['nsample'],
                                         stage['channels'], interp_channels,
                                         gen):
                if stage is SA1:
                    label = label.replace(f'{num}', 'N')
                entries.append((title, label, column, fn))
    times = median_ms([entry[3] for entry in entries], repeats, device)
    for title, *_ in tables:
        columns: List[str] = []
        rows: Dict[str, List[Tuple[float, float, float]]] = {}
        for (table, label, column, _), ms in zip(entries, times):
            if table == title:
                if column not in columns:
                    columns.append(column)
                rows.setdefault(label, []).append(ms)
        print_table(title, columns, rows)


if __name__ == '__main__':
    main()
