# Copyright (c) gap_mm contributors. All rights reserved.
"""Strip a (GaP) training checkpoint down to what inference needs.

Usage::

    python tools/model_converters/publish_model.py CHECKPOINT OUT.pth

Keeps ``state_dict`` and ``meta`` (as plain Python data) and drops the
optimizer, message hub, param schedulers and the GaP hook's ``gap_state``,
after checking that every weight a GaP mask prunes is exactly 0. The result
is an ordinary PyTorch checkpoint: unmodified mmdet / mmdet3d (``tools/
test.py``, ``init_detector``) load it with ``torch.load(weights_only=True)``
as a dense model with zeros, without gap_mm and without allow-listing
MMEngine's classes. Prints the SHA-256 of the file, as OpenMMLab's model zoo
names published checkpoints.
"""
import argparse
import hashlib
import os
import sys
from typing import List, Optional

import torch

from gap_mm.export.checkpoint_io import read_trained_checkpoint, to_jsonable


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='training checkpoint')
    parser.add_argument('out', help='output file (.pth)')
    parser.add_argument(
        '--allow-nonzero-masked',
        action='store_true',
        help='publish even if a weight pruned by a GaP mask is not 0')
    args = parser.parse_args(argv)
    state_dict, meta, _ = read_trained_checkpoint(args.checkpoint, args.out,
                                                  args.allow_nonzero_masked)
    meta = to_jsonable(meta)
    torch.save(dict(state_dict=state_dict, meta=meta), args.out)
    # The published file must load without any allow-list.
    torch.load(args.out, map_location='cpu', weights_only=True)
    with open(args.out, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(f'published {args.out} ({os.path.getsize(args.out):,} bytes, '
          f'sha256 {digest[:8]}...)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
