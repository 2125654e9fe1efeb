"""Train builtin:regression through the engine from the command line (used by subprocess tests).

    python tests/core/regression_run.py --output-dir DIR --max-steps 20 [--resume] [--dropout 0.1]
    torchrun --nproc_per_node 2 tests/core/regression_run.py --output-dir DIR ...
"""

import sys
from dataclasses import dataclass

import typer

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
    hang_at: int = opt(0, "Training step at which to write --ready-file and wait forever, so a test can kill "
                       "the process mid-run at a known step (0: never).")
    ready_file: str = opt("", "The file written when the run hangs at --hang-at.")


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


@config_command(app, RegressionConfig, name="train")
def train(cfg: RegressionConfig) -> None:
    fit(HangingRegressionTask(cfg.dropout, cfg.hang_at, cfg.ready_file), cfg, Run.create("core", cfg, "regression"))


@app.command()
def noop() -> None:
    """Keeps `train` a subcommand."""


if __name__ == "__main__":
    sys.exit(run_app(app, ["train", *sys.argv[1:]]))
