"""Piped output stays clean: no third-party progress bars (carriage returns) or library warnings reach a log
of `caption train --arch vit-gpt2` unless `--debug` asks for them."""

from __future__ import annotations

import os
import subprocess
import sys


def test_piped_vit_gpt2_training_log_has_no_progress_bars_or_library_warnings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFORMERS_", "HF_HUB_DISABLE_PROGRESS"))}
    env["DLKIT_CACHE"] = str(tmp_path / "cache")  # the builtin model is written too, as on a first run
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlkit",
            "caption",
            "train",
            "--arch",
            "vit-gpt2",
            "--max-steps",
            "1",
            "--batch-size",
            "4",
            "--eval-every",
            "100000",
            "--output-dir",
            tmp_path / "run",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "Warning" not in result.stderr, result.stderr
    assert "step 1/1" in result.stderr  # dlkit's own progress is still there
