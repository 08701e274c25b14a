# Copyright (c) gap_mm contributors. All rights reserved.
from .group_sampler import GroupDefaultSampler, GroupInfiniteSampler

__all__ = ['GroupDefaultSampler', 'GroupInfiniteSampler']
