"""Train builtin:regression through the engine from the command line (used by subprocess tests).

    python tests/core/regression_run.py --output-dir DIR --max-steps 20 [--resume] [--dropout 0.1]
    torchrun --nproc_per_node 2 tests/core/regression_run.py --output-dir DIR ...
"""

import sys
from dataclasses import dataclass

import typer

from dlkit.builtin.regression import RegressionTask
from dlkit.cli import run_app
from dlkit.core.commands import config_command
from dlkit.core.config import TrainConfig, opt
from dlkit.core.engine import fit
from dlkit.core.run import Run

app = typer.Typer()


@dataclass
class RegressionConfig(TrainConfig):
    dropout: float = opt(0.0, "Dropout in the MLP (makes the loss depend on the training RNG).")
    step_delay: float = opt(0.0, "Seconds to sleep per training step, so a test can kill mid-run.", resume_safe=True)


class SlowRegressionTask(RegressionTask):
    def __init__(self, dropout: float, step_delay: float):
        super().__init__(dropout=dropout)
        self.step_delay = step_delay

    def training_step(self, model, batch):
        import time

        time.sleep(self.step_delay)
        return super().training_step(model, batch)


@config_command(app, RegressionConfig, name="train")
def train(cfg: RegressionConfig) -> None:
    fit(SlowRegressionTask(cfg.dropout, cfg.step_delay), cfg, Run.create("core", cfg, "regression"))


@app.command()
def noop() -> None:
    """Keeps `train` a subcommand."""


if __name__ == "__main__":
    sys.exit(run_app(app, ["train", *sys.argv[1:]]))
