# Copyright (c) gap_mm contributors. All rights reserved.
"""CPU latency of a slimmed detector beside the model it came from.

Times the network (``model._forward`` on an image tensor: backbone, neck
and head, without pre- or post-processing) of the original config and of
the slimmed one that ``tools/model_converters/slim_model.py`` wrote, in one
run, interleaved (A B A B ...), at batch 1 and batch 8, with 2 threads;
prints median [min, max] per call and the speed-up, with both models'
FLOPs (``mmengine.analysis``) and parameters.

Usage::

    python benchmarks/bench_latency.py CONFIG SLIM_DIR \
        [--input-shape 3 160 160] [--rounds 20] [--threads 2]

``SLIM_DIR`` is the converter's output directory (``slim.pth`` and the
``*_slim.py`` config). The original is built from ``CONFIG`` with its
initial weights: latency does not depend on the values.
"""
import argparse
import glob
import os.path as osp
import statistics
import time

import torch
from mmengine.config import Config

import gap_mm  # noqa: F401
from gap_mm.analysis import build_model
from gap_mm.analysis.flops import module_flops
from gap_mm.checkpoint import load_checkpoint, split_checkpoint
from gap_mm.export.slim import count_params


def _time(fn, inputs) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        fn(inputs)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('slim_dir')
    parser.add_argument(
        '--input-shape', type=int, nargs=3, default=(3, 160, 160))
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    slim_cfgs = glob.glob(osp.join(args.slim_dir, '*_slim.py'))
    if len(slim_cfgs) != 1:
        raise SystemExit(f'error: {args.slim_dir} must hold one *_slim.py '
                         f'config (found {slim_cfgs})')
    cfg = Config.fromfile(args.config)
    full = build_model(cfg)
    if hasattr(full, 'architecture'):  # an SCSModel: time the detector
        full.gates.detach()
        full = full.architecture
    slim = build_model(Config.fromfile(slim_cfgs[0]))
    state, _ = split_checkpoint(
        load_checkpoint(osp.join(args.slim_dir, 'slim.pth')))
    slim.load_state_dict(state, strict=True)
    models = dict(original=full.eval(), slimmed=slim.eval())
    flops = {
        k: module_flops(m, args.input_shape)['']
        for k, m in models.items()
    }
    params = {k: count_params(m) for k, m in models.items()}
    print(f'{args.threads} threads, input {list(args.input_shape)}, '
          f'{args.rounds} rounds, interleaved; torch {torch.__version__}')
    print('| model | GFLOPs | params | batch | ms per call, median '
          '[min, max] | speed-up |')
    print('|---|---:|---:|---:|---|---:|')
    for batch in (1, 8):
        x = torch.rand(batch, *args.input_shape)
        times = {k: [] for k in models}
        for m in models.values():  # warm-up
            for _ in range(3):
                _time(m._forward, x)
        for _ in range(args.rounds):
            for k, m in models.items():
                times[k].append(_time(m._forward, x))
        base = statistics.median(times['original'])
        for k in models:
            t = times[k]
            med = statistics.median(t)
            print(f'| {k} | {flops[k] / 1e9:.4f} | {params[k]:,} | {batch} '
                  f'| {1e3 * med:.1f} [{1e3 * min(t):.1f}, '
                  f'{1e3 * max(t):.1f}] | {base / med:.2f}x |')


if __name__ == '__main__':
    main()
