"""A qa run (BERT dropout on) killed with SIGKILL and resumed trains exactly like an uninterrupted one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

CRASH = Path(__file__).parents[1] / "core" / "crash_run.py"
# the eval at step 4 is the trap: a model left in from_pretrained's eval mode would train steps 1-4 without
# dropout and with it after that eval, while the resumed run would train 5-8 without it
TRAIN = ["--max-length", "48", "--doc-stride", "16", "--batch-size", "8", "--max-steps", "8", "--save-every", "4",
         "--eval-every", "4", "--log-every", "1", "--max-eval-examples", "16"]


def losses(out: Path) -> list[float]:
    records = map(json.loads, (out / "history.jsonl").read_text().splitlines())
    return [r["loss"] for r in records if r["kind"] == "train"]


def test_sigkill_then_resume_repeats_the_losses_with_dropout(cli, tmp_path):
    whole = cli("qa", "train", "--output-dir", tmp_path / "whole", *TRAIN)
    assert whole.exit_code == 0, whole.stderr
    out = tmp_path / "cut"
    crashed = subprocess.run([sys.executable, str(CRASH), "dlkit", "2", "qa", "train", "--output-dir", str(out),
                              *TRAIN], capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]  # killed writing step 8's checkpoint
    assert [p.name for p in (out / "checkpoints").iterdir() if not p.name.endswith(".tmp")] == ["step_0000004"]
    resumed = cli("qa", "train", "--output-dir", out, *TRAIN, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert len(losses(out)) == 8 and losses(out) == losses(tmp_path / "whole")
