"""Helpers of the llm tests: small instruction files and a quick trainer (imported by name; fixtures live in
conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from dlkit.builtin import instruct


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def capitals_rows(num: int = 160, countries: int = 3, seed: int = 0) -> list[dict]:
    """Single-turn capital questions over the first `countries` entries of the table."""
    table = instruct.CAPITALS[:countries]
    rows = []
    for i in range(num):
        country, capital = table[(i * 7 + seed) % countries]
        rows.append(
            {
                "conversations": [
                    {"from": "human", "value": f"What is the capital of {country}?"},
                    {"from": "gpt", "value": capital},
                ]
            }
        )
    return rows


def translate_rows(num: int = 160) -> list[dict]:
    """English colour -> Persian word over 3 words: a second, unrelated task (for composition)."""
    pairs = list(zip(instruct.WORDS[:3], instruct.WORDS_FA[:3], strict=True))
    rows = []
    for i in range(num):
        english, persian = pairs[(i * 5) % 3]
        rows.append(
            {
                "conversations": [
                    {"from": "human", "value": f"Translate to Persian: {english}"},
                    {"from": "gpt", "value": persian},
                ]
            }
        )
    return rows


def train_run(out: Path, method: str, data: Path | str, steps: int = 30, lr: float = 2e-2, **extra):
    """A short run through the same function as `dlkit llm train`; returns (metrics, run dir)."""
    from dlkit.core.config import load_config
    from dlkit.llm.config import LlmConfig
    from dlkit.llm.task import train

    overrides = {
        "method": method,
        "data": str(data),
        "output_dir": str(out),
        "max_steps": steps,
        "lr": lr,
        "batch_size": 8,
        "eval_every": 10_000,
        "warmup": 0,
        "val_size": 8,
        "test_size": 24,
        "scheduler": "constant",
        "overwrite": True,
        **extra,
    }
    return train(load_config(LlmConfig, None, overrides)), out


def exact_match_on_test(run_dir: Path, data: Path | str | None = None) -> float:
    from dlkit.llm.config import EvalConfig
    from dlkit.llm.evaluate import evaluate

    result = evaluate(EvalConfig(run=str(run_dir), data=str(data) if data else None, max_new_tokens=6))
    return result[f"{result['split']}_exact_match"]  # a --data file without a split in its name is scored as all
