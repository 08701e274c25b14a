# Copyright (c) gap_mm authors. All rights reserved.
"""A toy model, dataset and metric for the launcher tests.

They are registered in MMEngine's root registries, so a plain MMEngine config
(``default_scope='mmengine'``) finds them through ``custom_imports``.
"""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from torch.utils.data import Dataset


@MODELS.register_module(force=True)
class LauncherToyModel(BaseModel):
    """Two linear layers with a batch norm in between (a DDP buffer)."""

    def __init__(self, data_preprocessor: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.linear1 = nn.Linear(2, 4)
        self.norm = nn.BatchNorm1d(4)
        self.linear2 = nn.Linear(4, 1)

    def forward(self,
                inputs: Union[torch.Tensor, List[torch.Tensor]],
                data_samples: Optional[Union[torch.Tensor, list]] = None,
                mode: str = 'tensor') -> Union[Dict, torch.Tensor, list]:
        """Return losses, predictions or the raw output by ``mode``."""
        if isinstance(inputs, list):
            inputs = torch.stack(inputs)
        if isinstance(data_samples, list):
            data_samples = torch.stack(data_samples)
        outputs = self.linear2(self.norm(self.linear1(inputs)))
        if mode == 'loss':
            return dict(loss=(outputs - data_samples).pow(2).mean())
        if mode == 'predict':
            return [
                dict(pred=out, gt=gt)
                for out, gt in zip(outputs, data_samples)
            ]
        return outputs


@DATASETS.register_module(force=True)
class LauncherToyDataset(Dataset):
    """16 samples ``x -> x0 + 2 * x1`` with a numpy array in ``metainfo``."""

    METAINFO = dict(classes=('toy', ), ids=np.arange(3))

    def __init__(self, num_samples: int = 16) -> None:
        generator = torch.Generator().manual_seed(0)
        self.data = torch.randn(num_samples, 2, generator=generator)
        self.label = self.data[:, :1] + 2 * self.data[:, 1:]

    @property
    def metainfo(self) -> dict:
        """dict: Dataset meta information, saved in checkpoints."""
        return self.METAINFO

    def __len__(self) -> int:
        return self.data.size(0)

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=self.data[index], data_samples=self.label[index])


@METRICS.register_module(force=True)
class LauncherToyMetric(BaseMetric):
    """Mean squared error, returned as a numpy scalar."""

    default_prefix = 'toy'

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Store the squared error of each prediction."""
        for sample in data_samples:
            self.results.append(
                float((sample['pred'] - sample['gt']).pow(2).sum()))

    def compute_metrics(self, results: list) -> dict:
        """Return the MSE as ``np.float64`` (as many real metrics do)."""
        return dict(mse=np.float64(np.mean(results)))
