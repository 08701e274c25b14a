# Copyright (c) gap_mm contributors. All rights reserved.
"""How hard the detection loss and the FLOPs term pull on SCS's gates, per
gated layer: the numbers behind ``SCSHook(gate_lr=...)`` and
``SCSModel(lambda_init=...)`` for a new model.

Trains the config's model for ``--iters`` iterations with its gate logits
held still (the gates sampled at ``beta`` = ``--beta``, no freeze, no
``lambda`` controller) and, inside every optimizer step, splits each gate's
gradient into the detection (task) part and the FLOPs part at ``lambda`` =
1. Prints, per gated layer or block, the median over the second half of the
iterations of the mean ``|gradient|`` of each part and their ratio:

* an SGD step moves a logit by ``gate_lr * gradient``: pick ``gate_lr`` so
  that the layers that should move can cross 0 (from ``init_logit``) in a
  few hundred steps;
* the FLOPs part at ``lambda`` = 1 over the task part says where
  ``lambda`` starts to outweigh the detection loss: start ``lambda_init``
  well below the smallest ratio, and let the controller raise it.

Usage::

    python tools/analysis_tools/scs_gate_gradients.py CONFIG \
        [--iters 100] [--beta 1] [--work-dir DIR] [--out-json F] \
        [--cfg-options KEY=VALUE ...]

``CONFIG`` is an SCS config (``model=dict(type='SCSModel', ...)`` and an
``SCSHook``); ``--cfg-options load_from=CKPT`` measures a trained model.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from gap_mm.engine.optimizers import StepStage
from gap_mm.errors import GaPConfigError
from gap_mm.prerun_checks import merge_cfg_options


class _Split(StepStage):
    """Before the gates' SGD: split each gate's gradient at lambda = 1."""

    def __init__(self, model, wrapper, records: List[dict]) -> None:
        self.model, self.wrapper, self.records = model, wrapper, records

    def before_mask(self, iteration: int) -> None:
        model = self.model
        scale = self.wrapper.grad_scale()  # the loss scale under AMP
        gates = model.gates.gates()
        names = [n for n, g in gates.items() if g.logits.grad is not None]
        if not names:
            return
        with torch.enable_grad():
            flops = torch.autograd.grad(
                model.flops_ratio(), [gates[n].logits for n in names],
                allow_unused=True)
        lam = float(model.scs_lambda)
        row = OrderedDict()
        for name, f_grad in zip(names, flops):
            f_grad = torch.zeros_like(gates[name].logits) \
                if f_grad is None else f_grad
            task = gates[name].logits.grad / scale - lam * f_grad
            row[name] = (float(task.abs().mean()), float(f_grad.abs().mean()))
        self.records.append(row)


class _MeasureHook(Hook):
    priority = 'HIGH'  # its stage runs before SCSHook's

    def __init__(self, records: List[dict]) -> None:
        self.records = records

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        wrapper = runner.optim_wrapper
        if not hasattr(wrapper, 'add_stage'):
            raise GaPConfigError(
                f"SCS needs optim_wrapper=dict(type='GaPOptimWrapper', ...) "
                f'(GaPAmpOptimWrapper for AMP), but got '
                f'{type(wrapper).__name__}')
        wrapper.add_stage(_Split(model, wrapper, self.records))


def summarize(records: List[Dict[str, tuple]]) -> List[dict]:
    """Per gate: medians of the second half of ``records``."""
    half = records[len(records) // 2:] or records
    names = OrderedDict((n, None) for r in records for n in r)
    out = []
    for name in names:
        if not any(name in r for r in half):
            continue
        task = statistics.median(r[name][0] for r in half if name in r)
        flops = statistics.median(r[name][1] for r in half if name in r)
        out.append(
            dict(
                gate=name,
                task=task,
                flops=flops,
                ratio=flops / task if task > 0 else float('inf')))
    return out


def format_rows(rows: List[dict]) -> str:
    lines = [
        '| gated layer or block | task \\|grad\\| | FLOPs \\|grad\\| at '
        'lambda 1 | FLOPs / task |', '|---|---:|---:|---:|'
    ]
    for r in rows:
        lines.append(f"| {r['gate']} | {r['task']:.2e} | {r['flops']:.2e} | "
                     f"{r['ratio']:.3g} |")
    return '\n'.join(lines)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Task and FLOPs gradients of the SCS gates')
    parser.add_argument('config', help='an SCS config')
    parser.add_argument('--iters', type=int, default=100)
    parser.add_argument(
        '--beta',
        type=float,
        default=1.0,
        help='the fixed gate temperature (default 1, where gating begins)')
    parser.add_argument('--work-dir', help='default: work_dirs/<name>_grads')
    parser.add_argument('--out-json', help='write the rows as JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    if args.iters < 2:
        parser.error(f'--iters must be at least 2, got {args.iters}')
    if not args.beta > 0:
        parser.error(f'--beta must be > 0, got {args.beta}')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.config):
        print(f'error: config {args.config} does not exist', file=sys.stderr)
        return 1
    from mmengine.runner import Runner
    cfg = Config.fromfile(args.config)
    try:
        merge_cfg_options(cfg, args.cfg_options)
        hooks = [h for h in cfg.get('custom_hooks', [])
                 if h.get('type') == 'SCSHook']
        if cfg.model.get('type') != 'SCSModel' or not hooks:
            raise GaPConfigError(
                f'{args.config} is no SCS config: it needs model=dict(type='
                f"'SCSModel', ...) and an SCSHook in custom_hooks")
    except GaPConfigError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    name = osp.splitext(osp.basename(args.config))[0]
    cfg.work_dir = args.work_dir or osp.join('work_dirs', f'{name}_grads')
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=args.iters, val_interval=10**9)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=10**9, by_epoch=False,
        save_last=False)
    cfg.resume = False
    hook = dict(hooks[0])
    hook.update(
        begin=0,
        freeze=args.iters - 1,
        beta_init=args.beta,
        beta_final=args.beta,
        flops_target=None,
        gate_lr=1e-30)  # the logits stay where they start
    cfg.custom_hooks = [hook]
    records: List[dict] = []
    try:
        runner = Runner.from_cfg(cfg)
        runner.register_hook(_MeasureHook(records))
        runner.train()
    except GaPConfigError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    rows = summarize(records)
    print(f'{name}: {len(records)} iterations at beta {args.beta:g}, '
          f'medians over the last {len(records) - len(records) // 2}')
    print(format_rows(rows))
    if args.out_json:
        with open(args.out_json, 'w') as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
