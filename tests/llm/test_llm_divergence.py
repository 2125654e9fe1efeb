"""A LoRA run at --lr 1e6: the checkpoint named after the stop holds the last good weights, not NaN."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch


def checkpoint_loss(run_dir: Path, checkpoint: Path) -> float:
    """The mean loss of a checkpoint's weights on the run's first training conversations."""
    from safetensors.torch import load_file

    from dlkit.core.run import Run
    from dlkit.llm.config import LlmConfig
    from dlkit.llm.task import LlmTask

    task = LlmTask(Run.open(run_dir, "llm").config_as(LlmConfig))
    model = task.build_model()
    _, unexpected = model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=False)
    assert not unexpected
    train, _ = task.datasets()
    batch = task.collate([train[i] for i in range(8)])
    with torch.no_grad():
        return task.training_step(model.eval(), batch)[0].item()


def test_the_checkpoint_named_after_a_bad_loss_holds_finite_weights_with_the_last_good_loss(
    cli, tmp_path, capitals_file
):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    result = cli(
        "llm",
        "train",
        "--method",
        "lora",
        "--data",
        capitals_file,
        "--output-dir",
        out,
        "--lr",
        "1e6",
        "--save-every",
        "1",
        "--keep-last",
        "1",
        "--max-steps",
        "12",
        "--batch-size",
        "8",
        "--log-every",
        "1",
        "--val-size",
        "8",
        "--test-size",
        "8",
    )
    assert result.exit_code == 2, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    named = re.search(r"the newest good checkpoint is (\S+);", message)
    assert named, message
    good = Path(named.group(1))
    weights = load_file(str(good / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    later = [c for c in (out / "checkpoints").glob("step_*") if c.name > good.name]
    assert later and all((c / "went_bad.json").is_file() for c in later)  # --keep-last 1 kept the good one too
    losses = [
        json.loads(line)["loss"] for line in (out / "history.jsonl").read_text().splitlines() if '"train"' in line
    ]
    assert 0 < checkpoint_loss(out, good) < 2 * max(losses)  # the loss it gave before the stop
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "diverged"
