"""Helpers of the report tests (imported by name; fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from dlkit.core.config import TrainConfig
from dlkit.core.engine import fit
from dlkit.core.reference import RegressionTask
from dlkit.core.run import Run

PERSIAN_QUESTION = "پایتخت ایران کجاست؟"
PERSIAN_ANSWER = "تهران پایتخت ایران است."


def regression_run(root: Path, group: str, name: str, lr: float, **overrides) -> Path:
    cfg = TrainConfig(
        output_dir=str(root / group / name), max_steps=6, lr=lr, batch_size=32, eval_every=3, log_every=1, **overrides
    )
    fit(RegressionTask(), cfg, Run.create(group, cfg, name))
    return root / group / name
