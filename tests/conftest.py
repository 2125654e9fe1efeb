"""Suite-wide settings: the Hub always looks offline (fast and deterministic, even on a machine with
internet), one torch thread per test process, plots render without a display, and `cli()` runs dlkit
in-process like a user would."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens on port 9: connection refused at once
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["MPLBACKEND"] = "Agg"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models on a small shared CPU: one intra-op thread per test process (pytest -n 2 runs two) is much
# faster than several threads fighting over the cores. Set before torch is imported; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `dlkit ARGS...` in this process; returns exit code, stdout and stderr."""
    from dlkit.cli import main

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return invoke
