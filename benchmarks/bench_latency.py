# Copyright (c) gap_mm contributors. All rights reserved.
"""CPU latency of a slimmed detector beside the model it came from (or of
any second config beside the first).

Times the network (``model._forward`` on an image tensor: backbone, neck
and head, without pre- or post-processing) of the original config and of
the slimmed one that ``tools/model_converters/slim_model.py`` wrote, in one
run, interleaved (A B A B ...), at batch 1 and batch 8, with 2 threads;
prints median [min, max] per call and the speed-up, with both models'
FLOPs (``mmengine.analysis``) and parameters.

``--runtime`` picks how both models run, the same for the two: ``eager``
(the default: PyTorch modules as the test tools run them),
``channels-last`` (the modules with their weights and the input in
channels-last memory: PyTorch's CPU max-pool is an order of magnitude
slower on the usual NCHW layout, and oneDNN's convolutions prefer NHWC) or
``torchscript`` (traced per batch size, frozen and
``torch.jit.optimize_for_inference``: batch norms folded into the
convolutions, oneDNN layouts, no Python between layers, as a deployment
would run it; PyTorch 2.13 marks TorchScript deprecated, and it still runs).
Every runtime's outputs are checked against the eager model's (on the
timed input and its negation, to rtol 1e-3, atol 1e-4) before any
timing.

With ``--breakdown`` it then times each model's parts at batch 1 (its
leaf modules, by their first two name components: ``backbone.conv1``,
``backbone.layer1``, ``neck.fpn_convs``, ``bbox_head.retina_cls``, ...)
beside their FLOPs, to show where latency that FLOPs do not explain goes;
``between leaves`` is the rest of a call (residual sums, Python). The
per-leaf timing adds overhead of its own, so the parts add up to more than
the plain call; read their shares, not their sum.

Usage::

    python benchmarks/bench_latency.py CONFIG SLIM_DIR \
        [--input-shape 3 160 160] [--rounds 20] [--threads 2] \
        [--runtime {eager,channels-last,torchscript}] [--breakdown]
    python benchmarks/bench_latency.py CONFIG OTHER_CONFIG.py \
        [--cfg-options KEY=VALUE ...] [...]

``SLIM_DIR`` is the converter's output directory (``slim.pth`` and the
``*_slim.py`` config). The original is built from ``CONFIG`` with its
initial weights: latency does not depend on the values. In the second form
the second model is built from ``OTHER_CONFIG.py`` with its initial
weights, ``--cfg-options`` applied to it alone (a thinner twin, say).
"""
import argparse
import copy
import glob
import os.path as osp
import statistics
import time
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping

import torch
from torch import nn
from mmengine.config import Config, DictAction

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


RUNTIMES = ('eager', 'channels-last', 'torchscript')


class _Network(nn.Module):
    """``model._forward`` as a module's forward, for tracing."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model._forward(inputs)


def _flat(outputs) -> List[torch.Tensor]:
    """The tensors of a network's output (a tensor, or nested tuples and
    lists of them, as ``_forward`` returns), in order."""
    if isinstance(outputs, torch.Tensor):
        return [outputs.to_dense() if outputs.is_mkldnn else outputs]
    if isinstance(outputs, (tuple, list)):
        return [t for item in outputs for t in _flat(item)]
    raise TypeError(f'a network output must be a tensor or nested tuples '
                    f'and lists of tensors, got {type(outputs).__name__}')


RTOL, ATOL = 1e-3, 1e-4


def check_same(call: Callable, model: nn.Module, inputs: torch.Tensor,
               runtime: str) -> None:
    """Check that ``call`` computes ``model._forward`` on ``inputs`` and on
    ``-inputs`` (a second input, whose branches a trace may not have
    taken), to ``RTOL`` / ``ATOL``.

    Raises:
        RuntimeError: Naming the first output that differs and by how
            much.
    """
    with torch.no_grad():
        for x in (inputs, -inputs):
            expected, got = _flat(model._forward(x)), _flat(call(x))
            if len(got) != len(expected):
                raise RuntimeError(
                    f'the {runtime} network returns {len(got)} tensors, '
                    f'the eager model {len(expected)}')
            for i, (g, e) in enumerate(zip(got, expected)):
                if g.shape != e.shape or not torch.allclose(
                        g, e, rtol=RTOL, atol=ATOL):
                    diff = ((g - e).abs().max().item()
                            if g.shape == e.shape else None)
                    raise RuntimeError(
                        f'the {runtime} network\'s output {i} differs from '
                        f'the eager model\'s (shapes {tuple(g.shape)} and '
                        f'{tuple(e.shape)}, largest difference {diff}; '
                        f'tolerance rtol={RTOL}, atol={ATOL})')


def to_channels_last(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with its weights in channels-last memory."""
    return copy.deepcopy(model).to(memory_format=torch.channels_last)


def in_runtime(model: nn.Module, runtime: str,
               example: torch.Tensor) -> Callable:
    """``model``'s network (``model._forward``) as ``runtime`` runs it, a
    callable on a batch shaped like ``example``, checked by
    :func:`check_same`. Puts ``model`` in eval mode; its weights and
    layout are left as they are (channels-last converts a copy, and
    torchscript freezes one).

    Raises:
        ValueError: An unknown ``runtime``.
        RuntimeError: The outputs differ from the eager model's.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f'runtime must be one of {RUNTIMES}, got '
                         f'{runtime!r}')
    model = model.eval()
    if runtime == 'eager':
        call = model._forward
    elif runtime == 'channels-last':
        converted = to_channels_last(model)

        def call(inputs):
            return converted._forward(
                inputs.contiguous(memory_format=torch.channels_last))
    else:
        with torch.no_grad():
            traced = torch.jit.trace(
                _Network(model), example, strict=False, check_trace=False)
            call = torch.jit.optimize_for_inference(
                torch.jit.freeze(traced.eval()))
    check_same(call, model, example, runtime)
    return call


def part_of(name: str) -> str:
    """The part a leaf module counts in: its first two name components."""
    return '.'.join(name.split('.')[:2])


def leaf_modules(model):
    """``(name, module)`` of every module without children, the root
    excluded."""
    return ((n, m) for n, m in model.named_modules()
            if n and not any(True for _ in m.children()))


def part_flops(model, by_module: Mapping[str, int]) -> Dict[str, int]:
    """FLOPs per part (:func:`part_of` of its leaf modules), and the whole
    model's under ``''``."""
    out = {'': by_module['']}
    for name, _ in leaf_modules(model):
        part = part_of(name)
        out[part] = out.get(part, 0) + by_module.get(name, 0)
    return out


def breakdown(model, inputs, rounds: int) -> Dict[str, float]:
    """Median seconds per call spent in each part's leaf modules, and
    under ``'between leaves'`` the median call minus their sum; with
    ``'total'``, the median call itself (timed with the hooks on)."""
    spent: Dict[str, float] = OrderedDict()
    start: Dict[str, float] = {}
    handles = []

    def before(name):

        def hook(module, args):
            start[name] = time.perf_counter()

        return hook

    def after(name):

        def hook(module, args, output):
            part = part_of(name)
            spent[part] = spent.get(part, 0.0) + (
                time.perf_counter() - start[name])

        return hook

    for name, module in leaf_modules(model):
        handles.append(module.register_forward_pre_hook(before(name)))
        handles.append(module.register_forward_hook(after(name)))
    per_round = []
    try:
        for _ in range(3):
            _time(model._forward, inputs)
        for _ in range(rounds):
            spent.clear()
            total = _time(model._forward, inputs)
            per_round.append((total, dict(spent)))
    finally:
        for handle in handles:
            handle.remove()
    parts = list(per_round[-1][1])
    out: Dict[str, float] = OrderedDict(
        (p, statistics.median(r[1].get(p, 0.0) for r in per_round))
        for p in parts)
    out['between leaves'] = statistics.median(t - sum(s.values())
                                              for t, s in per_round)
    out['total'] = statistics.median(t for t, _ in per_round)
    return out


def print_breakdown(models: Mapping,
                    flops: Mapping,
                    inputs,
                    rounds: int,
                    runtime: str = 'eager') -> None:
    """The per-part table of every model, side by side, in ``runtime``
    (``eager`` or ``channels-last``)."""
    names = list(models)
    if runtime == 'channels-last':
        converted = {k: to_channels_last(m) for k, m in models.items()}
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        for k, m in converted.items():
            check_same(m._forward, models[k].eval(), inputs, runtime)
        models = converted
    elif runtime != 'eager':
        raise ValueError(f'the breakdown runs eager or channels-last, not '
                         f'{runtime!r}')
    times = {k: breakdown(m, inputs, rounds) for k, m in models.items()}
    parts = list(
        OrderedDict.fromkeys(p for k in names for p in times[k]
                             if p not in ('between leaves', 'total')))
    parts += ['between leaves', 'total']
    head = ' | '.join(f'{k} ms | {k} share | {k} MFLOPs' for k in names)
    print(f'\nbatch {inputs.shape[0]}, per part (median of {rounds}, '
          f'leaf modules timed by hooks, {runtime})')
    print(f'| part | {head} |')
    print('|---|' + '---:|' * (3 * len(names)))
    for part in parts:
        cells = []
        for k in names:
            t, total = times[k].get(part), times[k]['total']
            f = flops[k].get(part) if part != 'total' else flops[k]['']
            cells += [
                '-' if t is None else f'{1e3 * t:.2f}',
                '-' if t is None else f'{100 * t / total:.1f}%',
                '-' if f is None else f'{f / 1e6:.1f}'
            ]
        print(f'| {part} | ' + ' | '.join(cells) + ' |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument(
        'other', help='a slim_model.py output directory, or a config .py')
    parser.add_argument(
        '--input-shape', type=int, nargs=3, default=(3, 160, 160))
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument(
        '--runtime',
        choices=RUNTIMES,
        default='eager',
        help='how both models run (default: eager)')
    parser.add_argument(
        '--breakdown',
        action='store_true',
        help='then time every part of both models at batch 1')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='overrides of OTHER_CONFIG.py (the second form only)')
    args = parser.parse_args()
    if args.breakdown and args.runtime == 'torchscript':
        parser.error('--breakdown times the leaf modules, which a '
                     'torchscript network no longer calls: use it with '
                     '--runtime eager or channels-last')
    torch.set_num_threads(args.threads)
    if args.other.endswith('.py'):
        if not osp.isfile(args.other):
            raise SystemExit(f'error: {args.other} does not exist')
        other_cfg = Config.fromfile(args.other)
        if args.cfg_options:
            other_cfg.merge_from_dict(args.cfg_options)
        second, label = build_model(other_cfg), 'compared'
    else:
        if args.cfg_options:
            raise SystemExit('error: --cfg-options applies to a second '
                             'config, not to a slimmed model')
        slim_cfgs = glob.glob(osp.join(args.other, '*_slim.py'))
        if len(slim_cfgs) != 1:
            raise SystemExit(f'error: {args.other} must hold one *_slim.py '
                             f'config (found {slim_cfgs}), or be a config '
                             f'.py')
        second, label = build_model(Config.fromfile(slim_cfgs[0])), 'slimmed'
        state, _ = split_checkpoint(
            load_checkpoint(osp.join(args.other, 'slim.pth')))
        second.load_state_dict(state, strict=True)

    def network(model):
        if hasattr(model, 'architecture'):  # an SCSModel: time the detector
            model.gates.detach()
            return model.architecture
        return model

    full = network(build_model(Config.fromfile(args.config)))
    models = {'original': full.eval(), label: network(second).eval()}
    by_module = {
        k: module_flops(m, args.input_shape)
        for k, m in models.items()
    }
    flops = {k: f[''] for k, f in by_module.items()}
    params = {k: count_params(m) for k, m in models.items()}
    print(f'{args.threads} threads, input {list(args.input_shape)}, '
          f'{args.rounds} rounds, interleaved, {args.runtime} runtime; '
          f'torch {torch.__version__}')
    print('| model | GFLOPs | params | batch | ms per call, median '
          '[min, max] | speed-up |')
    print('|---|---:|---:|---:|---|---:|')
    for batch in (1, 8):
        x = torch.rand(batch, *args.input_shape)
        calls = {
            k: in_runtime(m, args.runtime, x)
            for k, m in models.items()
        }
        times = {k: [] for k in models}
        for call in calls.values():  # warm-up
            for _ in range(3):
                _time(call, x)
        for _ in range(args.rounds):
            for k, call in calls.items():
                times[k].append(_time(call, x))
        base = statistics.median(times['original'])
        for k in models:
            t = times[k]
            med = statistics.median(t)
            print(f'| {k} | {flops[k] / 1e9:.4f} | {params[k]:,} | {batch} '
                  f'| {1e3 * med:.1f} [{1e3 * min(t):.1f}, '
                  f'{1e3 * max(t):.1f}] | {base / med:.2f}x |')
    if args.breakdown:
        flops_by_part = {
            k: part_flops(models[k], f)
            for k, f in by_module.items()
        }
        print_breakdown(models, flops_by_part,
                        torch.rand(1, *args.input_shape), args.rounds,
                        args.runtime)


if __name__ == '__main__':
    main()
