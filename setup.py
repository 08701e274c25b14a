# Copyright (c) gap_mm contributors. All rights reserved.
"""gap_mm: scheduled grow-and-prune sparse training for OpenMMLab.

As in OpenMMLab's own projects, ``pip install gap_mm`` installs only the
pure-Python needs (``requirements/runtime.txt``). The OpenMMLab packages
are in ``requirements/mminstall.txt`` and the ``mim`` extra: mmcv must be
built with its ops, which pip alone would turn into a plain source build
(10 to 25 minutes on 2 cores, without the ops a detector needs). Install
them with OpenMMLab's ``mim`` (``mim install "mmcv>=2.0.0,<2.2.0"``, which
fetches a prebuilt wheel where one exists for the platform) or let
``scripts/setup.sh`` build them. mmdet 3.x and mmdet3d 1.4 require
mmcv < 2.2.
"""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version():
    scope = {}
    with open(osp.join(HERE, 'gap_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def parse_requirements(name):
    """The requirement lines of ``requirements/<name>.txt``."""
    with open(osp.join(HERE, 'requirements', f'{name}.txt')) as f:
        return [
            line.strip() for line in f
            if line.strip() and not line.startswith('#')
        ]


setup(
    name='gap_mm',
    version=read_version(),
    description='Scheduled grow-and-prune (GaP) sparse training for '
    'MMEngine, MMDetection and MMDetection3D',
    long_description=open(osp.join(HERE, 'README.md')).read()
    if osp.exists(osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.8',
    packages=find_packages(
        include=['gap_mm', 'gap_mm.*', 'gap_mm3d', 'gap_mm3d.*']),
    install_requires=parse_requirements('runtime'),
    extras_require={
        'mim': parse_requirements('mminstall'),
        'det': parse_requirements('det'),
        '3d': parse_requirements('3d'),
        'tests': parse_requirements('tests'),
        'all': (parse_requirements('mminstall') + parse_requirements('det') +
                parse_requirements('3d') + parse_requirements('tests')),
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    zip_safe=False)
