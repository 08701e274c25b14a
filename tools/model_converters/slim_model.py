# Copyright (c) gap_mm contributors. All rights reserved.
"""Slim a structured-sparse model: cut out the channels whose filters are
all zero and write a smaller checkpoint and the config that builds it.

Usage::

    python tools/model_converters/slim_model.py CONFIG CHECKPOINT OUT_DIR \
        [--input-shape 3 160 160] [--cfg-options ...]

Writes ``OUT_DIR/slim.pth`` (``state_dict`` and ``meta``, no training
state) and ``OUT_DIR/<config name>_slim.py``: the same config with
``model = dict(type='SlimModel', model=<the original model>, channels=...,
biased=...)``, which builds the original detector at the slimmed widths.
The ordinary test tool evaluates it::

    python tools/test.py OUT_DIR/<config name>_slim.py OUT_DIR/slim.pth

A channel is removed only where that leaves the model's function unchanged
in evaluation mode (see :mod:`gap_mm.export.slim`): filter-wise GReg
removes its pruned channels whole, so all of them go. For an ``SCSModel``
the detector inside it is slimmed: its channels and residual blocks whose
gates are off (``1[s > 0] = 0``) go, and the written config builds the
detector alone. With
``--input-shape`` the tool counts FLOPs before and after with
``mmengine.analysis`` and checks that the slimmed network's outputs equal
the original's on a random input (the network's raw outputs; a two-stage
detector's RoI head on the fixed boxes FLOPs are counted for). Errors end
the tool with a one-line message and exit code 1.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
from typing import List, Optional

import torch
from mmengine.config import Config, DictAction

from gap_mm.analysis import ReportError, build_model
from gap_mm.analysis.flops import (InputShapeAction, module_flops,
                                   network_forward)
from gap_mm.analysis.sparsity_report import match_state_dict
from gap_mm.checkpoint import load_checkpoint, split_checkpoint
from gap_mm.errors import GaPConfigError
from gap_mm.export.checkpoint_io import to_jsonable
from gap_mm.export.slim import (apply_slimming, bake_gates, count_params,
                                plan_slimming)
from gap_mm.prerun_checks import merge_cfg_options


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Remove the all-zero channels of a model and write a '
        'smaller checkpoint plus the config that builds it')
    parser.add_argument(
        'config', help='the config the model was trained '
        'with')
    parser.add_argument('checkpoint', help='its checkpoint (.pth)')
    parser.add_argument('out_dir', help='where slim.pth and the config go')
    parser.add_argument(
        '--input-shape',
        type=int,
        nargs='+',
        action=InputShapeAction,
        metavar='DIM',
        help='C H W of an image (or N C of a point cloud): count FLOPs '
        '(mmengine.analysis) and compare the outputs before and after for '
        'inputs of this shape (give it after the positional arguments)')
    parser.add_argument(
        '--out-json', help='also write the figures and the per-group rows')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, as in tools/train.py')
    args = parser.parse_args(argv)
    return args


def _is_sparsity_hook(hook_type) -> bool:
    from mmengine.registry import HOOKS

    from gap_mm.engine import BaseSparsityHook, SCSHook
    cls = HOOKS.get(hook_type) if isinstance(hook_type, str) else hook_type
    return isinstance(cls, type) and issubclass(cls,
                                                (BaseSparsityHook, SCSHook))


def _forward(model: torch.nn.Module, inputs: torch.Tensor):
    with torch.no_grad():
        return network_forward(model, inputs)


def _max_diff(a, b) -> float:
    if isinstance(a, torch.Tensor):
        return float((a - b).abs().max()) if a.numel() else 0.0
    return max((_max_diff(x, y) for x, y in zip(a, b)), default=0.0)


def format_rows(rows: List[dict]) -> str:
    lines = [
        '| producer | channels | zero filters | removed | folded | kept '
        '(why) |', '|---|---:|---:|---:|---:|---|'
    ]
    for r in rows:
        lines.append(f"| {r['producer']} | {r['channels']} | {r['zero']} | "
                     f"{r['removed']} | {r['folded']} | {r['kept_zero']}"
                     f"{' (' + r['why_kept'] + ')' if r['why_kept'] else ''}"
                     ' |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.config):
        print(f'error: config {args.config} does not exist', file=sys.stderr)
        return 1
    cfg = Config.fromfile(args.config)
    try:
        merge_cfg_options(cfg, args.cfg_options)
        model = build_model(cfg)
        checkpoint = load_checkpoint(args.checkpoint)
        state_dict, meta = split_checkpoint(checkpoint, args.checkpoint)
        model.load_state_dict(
            match_state_dict(model, state_dict, args.checkpoint), strict=False)
        model.eval()
        # an SCSModel: slim the detector inside it, with its hard gates
        scs = hasattr(model, 'gates') and hasattr(model, 'architecture')
        net = model.architecture if scs else model
        model_cfg = cfg.model.architecture if scs else cfg.model
        params_before = count_params(net)
        inputs = flops_before = ref = None
        if args.input_shape:
            if scs:
                model.gates.detach()  # the full network's FLOPs
            flops_before = module_flops(net, args.input_shape)['']
            if scs:
                model.gates.attach(net)
            torch.manual_seed(0)
            inputs = torch.rand(2, *args.input_shape) * 2 - 1
            ref = _forward(net, inputs)
        removed_blocks = bake_gates(net, model.gates) if scs else []
        plan = plan_slimming(net)
        apply_slimming(net, plan)
        flops_after = module_flops(net, args.input_shape)[''] \
            if args.input_shape else None
        diff = _max_diff(ref, _forward(net, inputs)) \
            if inputs is not None else None
    except (GaPConfigError, ReportError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1

    os.makedirs(args.out_dir, exist_ok=True)
    ckpt_out = osp.join(args.out_dir, 'slim.pth')
    slim_meta = to_jsonable(meta)
    if not isinstance(slim_meta, dict):
        slim_meta = dict(meta=slim_meta)
    slim_meta['slim'] = dict(
        source=osp.basename(args.checkpoint),
        channels=plan.widths,
        biased=list(plan.fold),
        removed_blocks=removed_blocks,
        params=[params_before, count_params(net)],
        flops=[flops_before, flops_after],
        input_shape=args.input_shape)
    torch.save(dict(state_dict=net.state_dict(), meta=slim_meta), ckpt_out)
    slim_cfg = copy.deepcopy(cfg)
    slim_cfg.model = dict(
        type='SlimModel',
        model=model_cfg.to_dict()
        if hasattr(model_cfg, 'to_dict') else dict(model_cfg),
        channels=plan.widths,
        biased=list(plan.fold),
        removed_blocks=removed_blocks)
    slim_cfg.load_from = None
    # the slimmed network is dense: no sparsity hook has anything to do
    slim_cfg.custom_hooks = [
        h for h in slim_cfg.get('custom_hooks', [])
        if not _is_sparsity_hook(h.get('type'))
    ]
    name = osp.splitext(osp.basename(args.config))[0]
    cfg_out = osp.join(args.out_dir, f'{name}_slim.py')
    slim_cfg.dump(cfg_out)

    print(format_rows(plan.rows))
    for producer, why in plan.skipped.items():
        print(f'note: {producer} is not slimmed: {why}')
    removed = sum(r['removed'] for r in plan.rows)
    kept = sum(r['kept_zero'] for r in plan.rows)
    print(f'channels: removed {removed} of '
          f'{sum(r["channels"] for r in plan.rows)} in {len(plan.rows)} '
          f'groups ({kept} all-zero filters kept)')
    if removed_blocks:
        print(f'blocks removed (SCS gates off): {removed_blocks}')
    after = count_params(net)
    print(f'parameters: {params_before:,} -> {after:,} '
          f'({100 * (after / params_before - 1):+.1f}%)')
    if flops_before is not None:
        print(f'FLOPs for an input of {args.input_shape} (mmengine.analysis,'
              f' a multiply-add is one FLOP): {flops_before / 1e9:.4f} G -> '
              f'{flops_after / 1e9:.4f} G '
              f'({100 * (flops_after / flops_before - 1):+.1f}%)')
        print(f'outputs of the slimmed network vs the original, on a random '
              f'input: max |difference| {diff:.3g}')
    if args.out_json:
        with open(args.out_json, 'w') as f:
            json.dump(
                dict(
                    config=cfg_out,
                    checkpoint=ckpt_out,
                    max_output_difference=diff,
                    rows=plan.rows,
                    skipped=plan.skipped,
                    **slim_meta['slim']),
                f,
                indent=1)
    print(f'wrote {ckpt_out} and {cfg_out}; evaluate with\n'
          f'  python tools/test.py {cfg_out} {ckpt_out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
