# Copyright (c) gap_mm contributors. All rights reserved.
"""The requirement lists of the GPU check and the wheels folder they need.

Three lists beside this file say what the check needs on a machine with a
CUDA build of torch and no network:

* ``device_requirements.txt``: installed from the wheels folder before the
  checks (``pip install --no-index --no-deps``), every version pinned;
* ``device_requirements_3d.txt``: installed after mmcv is built with its
  ops (mmdet3d imports mmcv.ops, and ``import gap_mm`` imports mmdet3d
  when it is installed);
* ``device_requirements_base.txt``: what the machine is expected to have
  already (the GPU image's own packages), as version ranges; those it
  lacks are installed from the folder when it holds them
  (``prepare_device_wheels.sh --with-base``).

Subcommands::

    python tools/misc/device_wheels.py missing    # base lines not met here
    python tools/misc/device_wheels.py verify DIR  # the folder is complete

``verify`` checks that every pinned line has a wheel for CPython 3.12 on
manylinux x86_64 in DIR (an sdist for mmcv), and that every requirement of
every such wheel (for Python 3.12 on Linux, without extras) is met by a
pinned line, a base line or :data:`LEFT_OUT`: the dependency closure that
``--no-deps`` would otherwise leave unchecked.
"""
import argparse
import os.path as osp
import re
import sys
import zipfile
from email.parser import Parser
from typing import Dict, List, Optional, Tuple

HERE = osp.dirname(osp.abspath(__file__))
PINNED = ('device_requirements.txt', 'device_requirements_3d.txt')
BASE = 'device_requirements_base.txt'
#: The sdist the check builds (mmcv has no CPython 3.12 wheel on PyPI).
SDISTS = ('mmcv==2.1.0', )
#: Requirements the wheels declare and the check leaves out on purpose.
LEFT_OUT = {
    # mmengine and mmcv want opencv-python; the headless build of the
    # base list provides the same cv2 module.
    'opencv-python': 'cv2 comes from opencv-python-headless (base list)',
    'open3d': 'mmdet3d\'s visualizer only; scripts/setup.sh leaves it out '
    'too',
    'mmcv': 'built from its sdist on the machine (mmcv_build)',
    'torch': 'the machine\'s CUDA build',
    'lyft-dataset-sdk': 'mmdet3d\'s Lyft metric, which gap_mm3d never '
    'imports',
    'nuscenes-devkit': 'mmdet3d\'s nuScenes metric, which gap_mm3d never '
    'imports',
}
#: Markers are evaluated for the machine the check runs on.
ENVIRONMENT = dict(
    python_version='3.12',
    python_full_version='3.12.3',
    sys_platform='linux',
    platform_system='Linux',
    platform_machine='x86_64',
    os_name='posix',
    implementation_name='cpython',
    platform_python_implementation='CPython',
    extra='')
#: Wheel tags the check's machine accepts.
PYTHON_TAGS = ('cp312', 'py3', 'py2.py3', 'cp37', 'cp38', 'cp39', 'cp310',
               'cp311')
ABI_TAGS = ('cp312', 'abi3', 'none')


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r'[-_.]+', '-', name).lower()


def read_lines(name: str) -> List[str]:
    """The requirement lines of a list beside this file."""
    with open(osp.join(HERE, name)) as f:
        lines = [line.split('#', 1)[0].strip() for line in f]
    return [line for line in lines if line]


def _requirement(line: str):
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a bare Python: pip's own copy
        from pip._vendor.packaging.requirements import Requirement
    return Requirement(line)


def missing(lines: List[str]) -> List[str]:
    """The lines whose project is not installed here in a version the line
    accepts."""
    from importlib import metadata
    out = []
    for line in lines:
        req = _requirement(line)
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(line)
            continue
        if req.specifier and not req.specifier.contains(
                version, prereleases=True):
            out.append(line)
    return out


Tags = Tuple[str, str, List[str], List[str], List[str]]


def _wheel_tags(filename: str) -> Tags:
    """name, version, python tags, abi tags, platform tags of a wheel."""
    parts = filename[:-len('.whl')].split('-')
    name, version = parts[0], parts[1]
    py, abi, plat = parts[-3:]
    return (canonical(name), version, py.split('.'), abi.split('.'),
            plat.split('.'))


def _platform_ok(plat: str) -> bool:
    if plat == 'any':
        return True
    if plat in ('manylinux1_x86_64', 'manylinux2010_x86_64',
                'manylinux2014_x86_64'):
        return True
    match = re.fullmatch(r'manylinux_(\d+)_(\d+)_x86_64', plat)
    # glibc 2.28 is the newest the download command asks for
    return bool(match) and (int(match.group(1)), int(
        match.group(2))) <= (2, 28)


def fits(filename: str) -> bool:
    """Whether a wheel installs on CPython 3.12, manylinux x86_64."""
    _, _, pys, abis, plats = _wheel_tags(filename)
    return (any(p in PYTHON_TAGS for p in pys)
            and any(a in ABI_TAGS for a in abis)
            and any(_platform_ok(p) for p in plats))


def _metadata(path: str) -> Dict[str, List[str]]:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist()
                    if n.endswith('.dist-info/METADATA'))
        msg = Parser().parsestr(zf.read(name).decode('utf-8', 'replace'))
    return dict(requires=msg.get_all('Requires-Dist') or [])


def _applies(req) -> bool:
    return req.marker is None or req.marker.evaluate(ENVIRONMENT)


def verify(folder: str) -> List[str]:
    """Problems of the wheels folder against the lists (none: complete)."""
    import glob
    problems = []
    pinned = [
        _requirement(line) for name in PINNED for line in read_lines(name)
    ]
    base = {canonical(_requirement(line).name) for line in read_lines(BASE)}
    files = sorted(glob.glob(osp.join(folder, '*')))
    wheels: Dict[str, List[str]] = {}
    for path in files:
        if path.endswith('.whl'):
            name, version, *_ = _wheel_tags(osp.basename(path))
            wheels.setdefault(name, []).append(path)
    chosen: Dict[str, str] = {}
    for req in pinned:
        name = canonical(req.name)
        found = [
            p for p in wheels.get(name, [])
            if fits(osp.basename(p)) and req.specifier.contains(
                _wheel_tags(osp.basename(p))[1], prereleases=True)
        ]
        if not found:
            problems.append(f'no CPython 3.12 manylinux x86_64 wheel of '
                            f'{req} in {folder}')
        else:
            chosen[name] = found[0]
    for sdist in SDISTS:
        req = _requirement(sdist)
        version = str(req.specifier).lstrip('=')
        if not osp.isfile(osp.join(folder, f'{req.name}-{version}.tar.gz')):
            problems.append(f'no {req.name}-{version}.tar.gz in {folder}')
    provided = set(chosen) | base | set(LEFT_OUT)
    for name, path in chosen.items():
        for line in _metadata(path)['requires']:
            req = _requirement(line)
            if not _applies(req):
                continue
            dep = canonical(req.name)
            if dep not in provided:
                problems.append(f'{osp.basename(path)} requires {line}, '
                                f'which no list provides')
            elif dep in chosen:
                version = _wheel_tags(osp.basename(chosen[dep]))[1]
                if not req.specifier.contains(version, prereleases=True):
                    problems.append(f'{osp.basename(path)} requires {line}, '
                                    f'the folder has {dep} {version}')
    return problems


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('missing', help='the base lines not met here')
    check = sub.add_parser('verify', help='check a wheels folder')
    check.add_argument('folder')
    args = parser.parse_args(argv)
    if args.command == 'missing':
        for line in missing(read_lines(BASE)):
            print(line)
        return 0
    problems = verify(args.folder)
    for problem in problems:
        print(f'problem: {problem}')
    if not problems:
        print(f'{args.folder}: every pinned wheel is there for CPython 3.12 '
              f'(manylinux x86_64), mmcv\'s sdist too, and every requirement '
              f'they declare is pinned, in the base list or left out on '
              f'purpose')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
