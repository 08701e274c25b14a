from setuptools import find_packages, setup
setup(name='gap_mm', version='0.1.0', packages=find_packages(include=['gap_mm', 'gap_mm.*']))
