"""The engine in real processes: SIGKILL + --resume, and two DDP processes under torchrun."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("regression_run.py")
COMMON = ["--max-steps", "24", "--log-every", "1", "--save-every", "4", "--batch-size", "16", "--dropout", "0.3"]


def run_script(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--output-dir", str(out), *COMMON, *extra],
        capture_output=True,
        text=True,
        timeout=180,
    )


def train_losses(out: Path) -> list[float]:
    lines = (out / "history.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"train"' in line]


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_losses(tmp_path):
    whole = run_script(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    cut, ready = tmp_path / "cut", tmp_path / "hanging"
    # the run hangs inside step 15 (after the step-12 checkpoint and 14 logged steps) until it is killed
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--output-dir", str(cut), *COMMON, "--hang-at", "15", "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not ready.exists():
        assert proc.poll() is None, "the run ended before it reached step 15"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(train_losses(cut)) == 14, "the process dies mid-run, at a known step"
    resumed = run_script(cut, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert train_losses(cut) == train_losses(tmp_path / "whole")


@pytest.mark.slow
def test_two_processes_with_torchrun(tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            str(SCRIPT),
            "--output-dir",
            str(out),
            "--max-steps",
            "6",
            "--eval-every",
            "3",
            "--log-every",
            "1",
            "--batch-size",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 6
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history if r["kind"] == "train"] == list(range(1, 7))  # main process wrote once

    # the gathered eval equals a single-process evaluation of the same final weights
    from safetensors.torch import load_model

    from dlkit.builtin.regression import build_model, load_data

    model = build_model()
    load_model(model, str(out / "checkpoints/final/model.safetensors"))
    x, y = load_data().val.tensors
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(model(x).squeeze(-1).double(), y.double()).item()
    assert metrics["val_loss"] == pytest.approx(expected, rel=1e-5)
