"""QA test fixtures: one small trained run shared by the tests that need a trained model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TRAIN_ARGS = [
    "--max-length",
    "32",
    "--doc-stride",
    "8",
    "--lr",
    "3e-3",
    "--batch-size",
    "32",
    "--epochs",
    "6",
    "--head",
    "linear",
    "--warmup",
    "0.1",
    "--log-every",
    "20",
    "--seed",
    "0",
]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """builtin:tiny-bert trained on builtin:qa-synthetic with short windows (most contexts need two or more)."""
    from dlkit.cli import main

    run_dir = tmp_path_factory.mktemp("qa") / "run"
    code = main(["qa", "train", "--output-dir", str(run_dir), *TRAIN_ARGS])
    assert code == 0
    return run_dir


def write_squad(path: Path, paragraphs: list[dict]) -> Path:
    path.write_text(
        json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": paragraphs}]}, ensure_ascii=False),
        encoding="utf-8",
    )
    return path
