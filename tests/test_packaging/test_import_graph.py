# Copyright (c) gap_mm contributors. All rights reserved.
"""No import circle among the modules of gap_mm and gap_mm3d.

The graph is built from every ``import`` / ``from ... import`` statement of
every module (those inside functions included: a circle hidden in a
function still ties the two modules together), with relative imports
resolved. ``from pkg import name`` points at the module ``pkg.name`` when
there is one, else at ``pkg``. The implicit import of a module's parent
packages is left out: it is what makes a package's ``__init__`` and its
submodules one unit, not a circle between them.
"""
import ast
import importlib
import os
import os.path as osp
from importlib.util import find_spec
from typing import Dict, List, Optional, Set


ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PACKAGES = ('gap_mm', 'gap_mm3d')


def package_modules(root: str, packages) -> Dict[str, str]:
    """Module name -> file path for every ``.py`` file of ``packages``."""
    found = {}
    for package in packages:
        for folder, dirs, files in os.walk(osp.join(root, package)):
            dirs[:] = sorted(d for d in dirs if not d.startswith(('.', '_')))
            rel = osp.relpath(folder, root).split(os.sep)
            for name in sorted(files):
                if not name.endswith('.py'):
                    continue
                parts = rel if name == '__init__.py' else rel + [name[:-3]]
                found['.'.join(parts)] = osp.join(folder, name)
    return found


def _resolve(module: str, is_package: bool, level: int,
             target: Optional[str]) -> str:
    if not level:
        return target or ''
    base = module.split('.')
    base = base if is_package else base[:-1]
    base = base[:len(base) - (level - 1)]
    return '.'.join(base + ([target] if target else []))


def import_graph(modules: Dict[str, str]) -> Dict[str, Set[str]]:
    """Module -> the modules among ``modules`` that it imports."""
    graph: Dict[str, Set[str]] = {}
    for module, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        is_package = path.endswith('__init__.py')
        edges: Set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        edges.add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f'{source}.{alias.name}'
                    if sub in modules:
                        edges.add(sub)
                    elif source in modules:
                        edges.add(source)
        edges.discard(module)
        graph[module] = edges
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module
    (Tarjan's algorithm), each sorted; sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(out)


def test_no_import_cycle_in_the_package():
    modules = package_modules(ROOT, PACKAGES)
    assert 'gap_mm.engine.hooks.base_sparsity_hook' in modules
    assert 'gap_mm3d' in modules
    graph = import_graph(modules)
    # the graph sees the edges it should (a sanity check of the parser)
    assert 'gap_mm.registry' in graph['gap_mm.schedules.builder']
    assert 'gap_mm.engine.hooks.base_method_hook' in graph[
        'gap_mm.engine.hooks.base_sparsity_hook']
    assert find_cycles(graph) == []


def _write(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_synthetic_circle_is_found(tmp_path):
    _write(
        tmp_path, {
            'pkg/__init__.py': 'from .a import f\n',
            'pkg/a.py': 'from pkg.b import g\n\ndef f():\n    return g()\n',
            # the circle closes inside a function, as config_utils' did
            'pkg/b.py': 'def g():\n    from .a import f\n    return f\n',
            'pkg/sub/__init__.py': '',
            'pkg/sub/c.py': 'from .. import b\nimport pkg.sub.d\n',
            'pkg/sub/d.py': 'from ..sub import c\n',
        })
    modules = package_modules(str(tmp_path), ('pkg', ))
    graph = import_graph(modules)
    assert graph['pkg.sub.c'] == {'pkg.b', 'pkg.sub.d'}
    assert find_cycles(graph) == [['pkg.a', 'pkg.b'],
                                  ['pkg.sub.c', 'pkg.sub.d']]
    # a parent package importing its submodule is no circle
    assert find_cycles({'pkg': {'pkg.a'}, 'pkg.a': set()}) == []


def test_every_module_imports():
    modules = package_modules(ROOT, PACKAGES)
    if find_spec('mmdet3d') is None:
        modules = {m: p for m, p in modules.items() if m != 'gap_mm3d'
                   and not m.startswith('gap_mm3d.')}
    failed = {}
    for name in sorted(modules):
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 (report every failure)
            failed[name] = repr(err)
    assert not failed, failed
