"""Train builtin:regression through the engine from the command line (used by subprocess tests).

python tests/core/regression_run.py --output-dir DIR --max-steps 20 [--resume] [--dropout 0.1]
torchrun --nproc_per_node 2 tests/core/regression_run.py --output-dir DIR ...
"""

import sys
from dataclasses import dataclass

import torch
import typer
from torch.utils.data import TensorDataset

from dlkit.cli import run_app
from dlkit.core.commands import config_command
from dlkit.core.config import TrainConfig, opt
from dlkit.core.engine import fit
from dlkit.core.reference import RegressionTask
from dlkit.core.run import Run

app = typer.Typer()


@dataclass
class RegressionConfig(TrainConfig):
    dropout: float = opt(0.0, "Dropout in the MLP (makes the loss depend on the training RNG).")
    hang_at: int = opt(
        0,
        "Training step at which to write --ready-file and wait forever, so a test can kill "
        "the process mid-run at a known step (0: never).",
        resume_safe=True,
    )
    ready_file: str = opt("", "The file written when the run hangs at --hang-at.", resume_safe=True)
    items: bool = opt(False, "Per-position targets with 1..6 valid positions per example: batches differ in items.")


class HangingRegressionTask(RegressionTask):
    def __init__(self, dropout: float, hang_at: int, ready_file: str):
        super().__init__(dropout=dropout)
        self.hang_at, self.ready_file, self.train_calls = hang_at, ready_file, 0

    def training_step(self, model, batch):
        if model.training:
            self.train_calls += 1
            if self.train_calls == self.hang_at:
                import time
                from pathlib import Path

                Path(self.ready_file).write_text(str(self.hang_at))
                while True:  # until the test kills this process
                    time.sleep(1)
        return super().training_step(model, batch)


class ItemsTask(RegressionTask):
    """Regression onto 6 targets per example of which only the first 1..6 count: the loss is a mean over
    valid positions, so micro-batches carry different numbers of items (like tokens in a text batch)."""

    def datasets(self):
        train, val = super().datasets()
        return items_set(train), items_set(val)

    def build_model(self):
        from dlkit.builtin.regression import build_model

        model = build_model(dropout=self.dropout)
        model[-1] = torch.nn.Linear(model[-1].in_features, 6)
        return model

    def num_items(self, batch):
        return int(batch[2].sum())

    def training_step(self, model, batch):
        x, y, mask = batch
        return ((model(x) - y) ** 2 * mask).sum() / mask.sum()

    def evaluate(self, model, loader, accel):
        from dlkit.core.engine import mean_loss

        return {"val_loss": mean_loss(self, model, loader, accel)}


def items_set(dataset):
    x, y = dataset.tensors
    gen = torch.Generator().manual_seed(1)
    targets = y[:, None] * torch.linspace(0.5, 1.5, 6) + 0.1 * torch.randn(len(y), 6, generator=gen)
    valid = torch.randint(1, 7, (len(y),), generator=gen)
    mask = (torch.arange(6)[None, :] < valid[:, None]).float()
    return TensorDataset(x, targets, mask)


@config_command(app, RegressionConfig, name="train")
def train(cfg: RegressionConfig) -> None:
    task = (
        ItemsTask(dropout=cfg.dropout) if cfg.items else HangingRegressionTask(cfg.dropout, cfg.hang_at, cfg.ready_file)
    )
    fit(task, cfg, Run.create("core", cfg, "regression"))


@app.command()
def noop() -> None:
    """Keeps `train` a subcommand."""


if __name__ == "__main__":
    sys.exit(run_app(app, ["train", *sys.argv[1:]]))
