"""The engine's reference task: an MLP fitting builtin:regression, whose best possible validation MSE is
known (engine tests, report tests, benchmarks). A group's Task looks like this, only larger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from dlkit.core.engine import mean_loss
from dlkit.core.sources import load_builtin
from dlkit.core.task import Task


@dataclass
class RegressionTask(Task):
    """builtin:mlp fitting builtin:regression with mean squared error."""

    dropout: float = 0.0
    num_train: int = 512

    def __post_init__(self) -> None:
        self.data: Any = load_builtin("regression", num_train=self.num_train)  # a RegressionData

    def build_model(self) -> nn.Module:
        return load_builtin("mlp", dropout=self.dropout)

    def datasets(self) -> tuple[TensorDataset, TensorDataset]:
        return self.data.train, self.data.val

    def training_step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch  # (B, D), (B,)
        return nn.functional.mse_loss(model(x).squeeze(-1), y)

    def evaluate(self, model: nn.Module, loader, accel) -> dict[str, float]:
        return {"val_loss": mean_loss(self, model, loader, accel)}
