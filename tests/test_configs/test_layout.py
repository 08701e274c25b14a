# Copyright (c) gap_mm contributors. All rights reserved.
"""configs/ is laid out as mmdet lays out its own (configs/README.md).

Every config loads; method configs sit one level above their ``_base_``
files and read no hook list but an upstream config's (to append to it); no
chain of project configs is deeper than two hops to an mmdet / mmdet3d
config or a file of ``configs/_base_/``; and every ``configs/...py`` a
Markdown page of the repository names exists and loads.
"""
import ast
import functools
import glob
import os.path as osp
import re
from typing import Dict, List, Optional

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs')
#: Method folder -> the method field its file names may start with.
METHODS = {
    'dense': ('dense', ),
    'gap': ('cgap', 'cgap-k2', 'static', 'static-random'),
    'pgap': ('pgap', ),
    'gmp': ('gmp', ),
    'rigl': ('rigl', ),
    'set': ('set', ),
    'greg': ('greg1', 'greg2', 'greg1-filter', 'greg2-filter'),
    'scs': ('scs', ),
}
MAX_HOPS = 2


def _rel(path: str) -> str:
    return osp.relpath(path, ROOT)


def all_configs(root: str = CONFIGS) -> List[str]:
    return sorted(glob.glob(osp.join(root, '**', '*.py'), recursive=True))


def base_paths(path: str) -> List[str]:
    """The ``_base_`` entries of a config file, as written, read with ast
    (the file is not executed)."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_'
                for t in node.targets):
            value = ast.literal_eval(node.value)
            return [value] if isinstance(value, str) else list(value)
    return []


def resolve(path: str, base: str) -> Optional[str]:
    """The file a ``_base_`` entry names; None for another package's config
    (``mmdet::...``, ``mmdet3d::...``)."""
    if '::' in base:
        return None
    return osp.normpath(osp.join(osp.dirname(path), base))


def is_anchor(path: Optional[str], configs_root: str) -> bool:
    """Where a walk up the ``_base_`` chain stops: another package's config
    or a file of ``configs/_base_/``."""
    base_dir = osp.join(osp.abspath(configs_root), '_base_')
    return path is None or osp.abspath(path).startswith(base_dir + osp.sep)


def hops(path: str, configs_root: str,
         memo: Optional[Dict[str, int]] = None) -> int:
    """How many ``_base_`` hops the longest chain from ``path`` takes to
    reach an anchor (see :func:`is_anchor`); 0 for a file without bases."""
    memo = {} if memo is None else memo
    if path not in memo:
        memo[path] = -1  # a cycle fails below, never recurses forever
        depth = 0
        for base in base_paths(path):
            target = resolve(path, base)
            if is_anchor(target, configs_root):
                depth = max(depth, 1)
            else:
                assert osp.isfile(target), f'{path}: no {base}'
                assert memo.get(target) != -1, f'cycle at {target}'
                depth = max(depth, 1 + hops(target, configs_root, memo))
        memo[path] = depth
    return memo[path]


def too_deep(configs_root: str, max_hops: int = MAX_HOPS) -> Dict[str, int]:
    """The configs under ``configs_root`` more than ``max_hops`` hops from
    an anchor, with their hop counts."""
    memo: Dict[str, int] = {}
    found = {}
    for path in all_configs(configs_root):
        n = hops(path, configs_root, memo)
        if n > max_hops:
            found[osp.relpath(path, configs_root)] = n
    return found


def assigned_names(path: str) -> List[str]:
    """The top-level names a config file assigns, read with ast."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    return [
        t.id for node in tree.body if isinstance(node, ast.Assign)
        for t in node.targets if isinstance(t, ast.Name)
    ]


def hook_list_readers(configs_root: str) -> Dict[str, List[str]]:
    """Configs that read ``_base_.custom_hooks`` -> their ``_base_``
    entries, for those that read a project file's list or no upstream one.

    A config may append to the hook list of another package's config (mmdet
    keeps EMAHook and the mode-switch hooks of YOLOX, RTMDet and SSD there:
    ``custom_hooks = _base_.custom_hooks + [dict(type='GaPHook', ...)]``);
    a project file's hook list is never read, so that no method inherits
    another's hooks.
    """
    found = {}
    for path in all_configs(configs_root):
        if '_base_.custom_hooks' not in open(path, encoding='utf-8').read():
            continue
        bases = base_paths(path)
        upstream = [b for b in bases if resolve(path, b) is None]
        own_lists = [
            b for b in bases if resolve(path, b) is not None
            and 'custom_hooks' in assigned_names(resolve(path, b))
        ]
        if not upstream or own_lists:
            found[osp.relpath(path, configs_root)] = bases
    return found


def test_only_upstream_hook_lists_are_read():
    assert hook_list_readers(CONFIGS) == {}


def test_the_hook_list_check_finds_a_project_list(tmp_path):
    root = tmp_path / 'configs'
    (root / '_base_').mkdir(parents=True)
    (root / 'gap').mkdir()
    (root / '_base_' / 'hooks.py').write_text(
        "custom_hooks = [dict(type='EMAHook')]\n")
    (root / '_base_' / 'sparsity.py').write_text('gap_sparsity = 0.8\n')
    appends = "custom_hooks = _base_.custom_hooks + [dict(type='GaPHook')]\n"
    (root / 'gap' / 'upstream.py').write_text(
        "_base_ = ['mmdet::ssd/ssd300_coco.py', '../_base_/sparsity.py']\n"
        + appends)
    (root / 'gap' / 'own.py').write_text(
        "_base_ = ['mmdet::ssd/ssd300_coco.py', '../_base_/hooks.py']\n"
        + appends)
    (root / 'gap' / 'none.py').write_text(
        "_base_ = ['../_base_/sparsity.py']\n" + appends)
    assert hook_list_readers(str(root)) == {
        osp.join('gap', 'own.py'):
        ['mmdet::ssd/ssd300_coco.py', '../_base_/hooks.py'],
        osp.join('gap', 'none.py'): ['../_base_/sparsity.py'],
    }


def test_no_chain_is_deeper_than_two_hops():
    assert too_deep(CONFIGS) == {}


def test_the_hop_check_finds_a_deep_chain(tmp_path):
    root = tmp_path / 'configs'
    (root / '_base_' / 'models').mkdir(parents=True)
    (root / 'gap').mkdir()
    (root / '_base_' / 'models' / 'm.py').write_text(
        "_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'\n")
    (root / '_base_' / 'sparsity.py').write_text('gap_sparsity = 0.8\n')
    (root / 'gap' / 'a.py').write_text(
        "_base_ = ['../_base_/models/m.py', '../_base_/sparsity.py']\n")
    (root / 'gap' / 'b.py').write_text("_base_ = './a.py'\n")
    (root / 'gap' / 'c.py').write_text("_base_ = ['./b.py']\n")
    (root / 'd.py').write_text("_base_ = './gap/c.py'\n")
    assert too_deep(str(root)) == {
        osp.join('gap', 'c.py'): 3,
        'd.py': 4,
    }
    assert hops(str(root / 'gap' / 'b.py'), str(root)) == 2
    assert hops(str(root / '_base_' / 'models' / 'm.py'), str(root)) == 1
    assert hops(str(root / '_base_' / 'sparsity.py'), str(root)) == 0


@pytest.mark.parametrize('folder', sorted(METHODS))
def test_method_configs_sit_on_base_files(folder):
    """Each method config is named as configs/README.md says and is
    ``_base_`` files (or another package's configs) plus its own settings:
    one hop, never a sibling config."""
    paths = all_configs(osp.join(CONFIGS, folder))
    assert paths, f'configs/{folder}/ is empty'
    for path in paths:
        fields = osp.basename(path)[:-len('.py')].split('_')
        assert len(fields) == 5, path
        assert fields[0] in METHODS[folder], path
        for base in base_paths(path):
            assert is_anchor(resolve(path, base), CONFIGS), (path, base)


def test_base_references_only_reach_base_files():
    """``_base_.x`` and ``{{_base_.x}}`` read shared settings out of
    ``configs/_base_/`` files only, never out of a method config."""
    for path in all_configs():
        text = open(path, encoding='utf-8').read()
        if '_base_.' not in text:
            continue
        for base in base_paths(path):
            target = resolve(path, base)
            assert target is None or '/_base_/' in target.replace(
                osp.sep, '/'), (_rel(path), base)


@functools.lru_cache(maxsize=None)
def _load(path: str) -> dict:
    """``Config.fromfile(path).to_dict()``, read once per session (a config
    named in several pages is loaded once)."""
    return Config.fromfile(osp.join(ROOT, path)).to_dict()


@pytest.mark.parametrize('path', [_rel(p) for p in all_configs()])
def test_every_config_loads(path):
    assert _load(path)


def _markdown_files() -> List[str]:
    files = [osp.join(ROOT, 'README.md')]
    for pattern in ('configs/**/*.md', 'docs/**/*.md', 'benchmarks/**/*.md'):
        files += glob.glob(osp.join(ROOT, pattern), recursive=True)
    return sorted(set(f for f in files if osp.isfile(f)))


CONFIG_PATH = re.compile(r'(?<![\w/.-])configs/[\w./-]+?\.py\b')


def _named_configs() -> List[tuple]:
    named = set()
    for md in _markdown_files():
        for match in CONFIG_PATH.findall(open(md, encoding='utf-8').read()):
            named.add((_rel(md), match))
    return sorted(named)


def test_markdown_names_configs():
    assert any(path == 'configs/gap_faster_rcnn.py'
               for _, path in _named_configs())


@pytest.mark.parametrize('page, path', _named_configs())
def test_configs_named_in_markdown_exist_and_load(page, path):
    assert osp.isfile(osp.join(ROOT, path)), f'{page} names {path}'
    assert _load(path)
