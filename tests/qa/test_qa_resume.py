"""A qa run (BERT dropout on) killed with SIGKILL and resumed trains exactly like an uninterrupted one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

CRASH = Path(__file__).parents[1] / "core" / "crash_run.py"
# the eval at step 4 is the trap: a model left in from_pretrained's eval mode would train steps 1-4 without
# dropout and with it after that eval, while the resumed run would train 5-8 without it
TRAIN = [
    "--max-length",
    "48",
    "--doc-stride",
    "16",
    "--batch-size",
    "8",
    "--max-steps",
    "8",
    "--save-every",
    "4",
    "--eval-every",
    "4",
    "--log-every",
    "1",
    "--max-eval-examples",
    "16",
]


def losses(out: Path) -> list[float]:
    records = map(json.loads, (out / "history.jsonl").read_text().splitlines())
    return [r["loss"] for r in records if r["kind"] == "train"]


@pytest.mark.slow
def test_sigkill_then_resume_repeats_the_losses_with_dropout(cli, tmp_path):
    from dlkit.qa.data import load_splits
    from dlkit.qa.prepare import write_jsonl

    data = tmp_path / "train.jsonl"  # 200 builtin questions: enough for 8 steps, quick to cut into windows
    write_jsonl(data, load_splits("builtin:qa-synthetic")["train"][:200])
    args = ["--data", str(data), *TRAIN]
    whole = cli("qa", "train", "--output-dir", tmp_path / "whole", *args)
    assert whole.exit_code == 0, whole.stderr
    out = tmp_path / "cut"
    crashed = subprocess.run(
        [sys.executable, str(CRASH), "dlkit", "2", "qa", "train", "--output-dir", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]  # killed writing step 8's checkpoint
    assert [p.name for p in (out / "checkpoints").iterdir() if not p.name.endswith(".tmp")] == ["step_0000004"]
    resumed = cli("qa", "train", "--output-dir", out, *args, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert len(losses(out)) == 8 and losses(out) == losses(tmp_path / "whole")
