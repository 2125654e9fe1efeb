"""builtin:regression and builtin:mlp: the smallest task with a known optimum, used to test the engine
(dlkit.core.reference.RegressionTask).

y = X w + b + eps with eps ~ N(0, noise_std^2): no model can beat an MSE of noise_std^2 on fresh data,
and a model that learned w reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset


@dataclass(frozen=True)
class RegressionData:
    train: TensorDataset
    val: TensorDataset
    weight: torch.Tensor  # (D,) the true coefficients
    bias: float
    noise_std: float

    @property
    def optimal_mse(self) -> float:
        return self.noise_std**2


def load_data(
    num_train: int = 512, num_val: int = 256, dim: int = 8, noise_std: float = 0.1, seed: int = 1234
) -> RegressionData:
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(dim, generator=gen)
    bias = 0.5

    def split(n: int) -> TensorDataset:
        x = torch.randn(n, dim, generator=gen)  # (n, D)
        y = x @ weight + bias + noise_std * torch.randn(n, generator=gen)  # (n,)
        return TensorDataset(x, y)

    return RegressionData(split(num_train), split(num_val), weight, bias, noise_std)


def build_model(dim: int = 8, hidden: int = 32, dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, 1))
