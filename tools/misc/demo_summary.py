# Copyright (c) gap_mm contributors. All rights reserved.
"""Print the demo's result: bbox mAP next to the achieved sparsity.

Usage: python tools/misc/demo_summary.py CHECKPOINT TEST_WORK_DIR
"""
import argparse
import glob
import json
import os.path as osp
import sys

import torch

import gap_mm  # noqa: F401  (allow-lists mmengine's checkpoint classes)
from gap_mm.sparsity import unpack_mask


def latest_test_metrics(work_dir):
    """The metrics mmengine's LoggerHook dumped for the newest test run."""
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    for path in reversed(files):
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        for record in reversed(lines):
            if 'coco/bbox_mAP' in record:
                return record
    sys.exit(f'error: no test metrics (coco/bbox_mAP) under {work_dir}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint')
    parser.add_argument('test_work_dir')
    args = parser.parse_args()
    ckpt = torch.load(args.checkpoint, map_location='cpu', weights_only=True)
    state = ckpt['state_dict']
    masks = ckpt['gap_state']['sparsifier']['masks']
    pruned = masked = 0
    for name, entry in masks.items():
        keep = unpack_mask(entry, name)
        masked += keep.numel()
        pruned += int((~keep).sum())
        assert (state[name][~keep] == 0).all(), f'{name}: masked weight != 0'
    total = sum(v.numel() for v in state.values() if v.is_floating_point())
    zeros = sum(
        int((v == 0).sum()) for v in state.values() if v.is_floating_point())
    metrics = latest_test_metrics(args.test_work_dir)
    rows = [
        ('checkpoint', args.checkpoint),
        ('bbox mAP (val, CocoMetric)', f"{metrics['coco/bbox_mAP']:.3f}"),
        ('bbox mAP@0.5', f"{metrics['coco/bbox_mAP_50']:.3f}"),
        ('sparsity of the GaP-pruned layers',
         f'{pruned / max(1, masked):.2%} of {masked:,} weights'),
        ('zeros in the whole state_dict', f'{zeros / total:.2%} of '
         f'{total:,} values'),
    ]
    width = max(len(k) for k, _ in rows)
    print('\n== gap_mm demo result ==')
    for key, value in rows:
        print(f'{key.ljust(width)} : {value}')


if __name__ == '__main__':
    main()
