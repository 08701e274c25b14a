# Copyright (c) gap_mm contributors. All rights reserved.
"""A tiny model and dataset for testing GaP through MMEngine's Runner.

Like :mod:`mmengine.testing`'s ToyModel, but with enough layers to split
into partitions and enough weights for exact sparsity counts.
"""
import torch
from mmengine.model import BaseModel
from torch import nn
from torch.utils.data import Dataset


class GaPToyModel(BaseModel):
    """Conv1d → Linear → Linear → Linear regression net (4 prunable layers).

    Args:
        width (int): Hidden width. Defaults to 16.
    """

    def __init__(self, width: int = 16, data_preprocessor=None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.conv = nn.Conv1d(1, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 8, width)
        self.bn = nn.BatchNorm1d(width)
        self.fc2 = nn.Linear(width, width)
        self.head = nn.Linear(width, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if isinstance(inputs, (list, tuple)):
            inputs = torch.stack(inputs)
        if isinstance(data_samples, (list, tuple)):
            data_samples = torch.stack(data_samples)
        x = torch.relu(self.conv(inputs.unsqueeze(1))).flatten(1)
        x = torch.relu(self.bn(self.fc1(x)))
        x = torch.relu(self.fc2(x))
        out = self.head(x).squeeze(1)
        if mode == 'loss':
            return dict(loss=((out - data_samples)**2).mean())
        return out


class GaPToyDataset(Dataset):
    """24 fixed samples of 8 features and a smooth target."""

    METAINFO: dict = dict()

    def __init__(self, size: int = 24) -> None:
        gen = torch.Generator().manual_seed(1234)
        self.data = torch.randn(size, 8, generator=gen)
        self.label = self.data[:, :4].sum(1) - self.data[:, 4:].prod(1)

    @property
    def metainfo(self) -> dict:
        return self.METAINFO

    def __len__(self) -> int:
        return self.data.size(0)

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=self.data[index], data_samples=self.label[index])
