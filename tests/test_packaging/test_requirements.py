# Copyright (c) gap_mm contributors. All rights reserved.
"""``pip install gap_mm`` must not start an mmcv source build."""
import os.path as osp
import re
from importlib.metadata import requires

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: Packages that need (or pull in) mmcv with its compiled ops.
MM_BUILT = ('mmcv', 'mmdet', 'mmdet3d')


def _name(requirement: str) -> str:
    return re.split(r'[<>=!~;\[ ]', requirement, 1)[0].strip().lower()


def test_plain_install_requires_no_openmmlab_build():
    # The installed metadata (scripts/setup.sh installs gap_mm editable).
    unconditional = [r for r in requires('gap_mm') if 'extra ==' not in r]
    assert unconditional, 'gap_mm declares no requirements at all'
    assert not [r for r in unconditional if _name(r) in MM_BUILT], \
        unconditional
    extras = {
        _name(r): r.split('extra ==')[1].strip().strip('"\'')
        for r in requires('gap_mm') if 'extra ==' in r
    }
    # mmcv comes with the `mim` extra, as in OpenMMLab's own packages
    assert extras['mmcv'] in ('mim', 'all')


def test_requirement_files_match_the_tested_ranges():
    with open(osp.join(ROOT, 'requirements', 'mminstall.txt')) as f:
        assert 'mmcv>=2.0.0,<2.2.0' in f.read().split()
    with open(osp.join(ROOT, 'requirements', 'runtime.txt')) as f:
        runtime = [_name(line) for line in f if line.strip()]
    assert 'safetensors' in runtime and 'mmcv' not in runtime
