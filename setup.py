# Copyright (c) gap_mm contributors. All rights reserved.
"""gap_mm: scheduled grow-and-prune sparse training for OpenMMLab.

The version ranges are the ones this project is tested with (see README):
mmdet 3.x and mmdet3d 1.4 require mmcv < 2.2. mmcv must be built with its
ops (``MMCV_WITH_OPS=1``), which ``scripts/setup.sh`` does; pip alone would
try a plain source build, so mmcv is listed but not forced here.
"""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'gap_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='gap_mm',
    version=read_version(),
    description='Scheduled grow-and-prune (GaP) sparse training for '
    'MMEngine, MMDetection and MMDetection3D',
    long_description=open('README.md').read() if osp.exists('README.md')
    else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.8',
    packages=find_packages(
        include=['gap_mm', 'gap_mm.*', 'gap_mm3d', 'gap_mm3d.*']),
    install_requires=[
        'torch>=2.0',
        'numpy',
        'mmengine>=0.10.0,<0.11',
        'mmcv>=2.0.0,<2.2.0',
    ],
    extras_require={
        'det': ['mmdet>=3.0.0,<3.4', 'pycocotools'],
        '3d': ['mmdet3d>=1.1.0,<1.5'],
        'tests': ['pytest', 'pytest-timeout', 'matplotlib'],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    zip_safe=False)
