"""Rows of 20,000 words in every split: training, the eval loss, the eval samples, `llm eval`, `generate` and
`reason` each read at most --max-length tokens of them (a prompt keeps its end), and say what they cut."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from llm_helpers import write_jsonl
from torch import nn

from dlkit.builtin import instruct

WORDS = 20_000


def long_question(i: int) -> str:
    filler = " ".join(f"w{(i * 7 + k) % 97}" for k in range(WORDS))
    return f"{filler} What is the capital of {instruct.CAPITALS[i % 3][0]}?"


@contextmanager
def longest_input() -> Iterator[list[int]]:
    """The longest token sequence any embedding layer reads inside the block (one entry, updated)."""
    seen = [0]

    def hook(module: nn.Module, args: tuple) -> None:
        if isinstance(module, nn.Embedding) and args:
            seen[0] = max(seen[0], args[0].shape[-1])

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def long_rows(tmp_path_factory):
    rows = [{"instruction": long_question(i), "output": instruct.CAPITALS[i % 3][1]} for i in range(12)]
    return write_jsonl(tmp_path_factory.mktemp("long") / "long.jsonl", rows)


def test_every_path_reads_at_most_the_budget(cli, tmp_path, long_rows):
    run = tmp_path / "run"
    with longest_input() as seen:
        result = cli(
            "llm",
            "train",
            "--data",
            long_rows,
            "--max-length",
            "64",
            "--max-steps",
            "2",
            "--eval-every",
            "1",
            "--val-size",
            "4",
            "--test-size",
            "4",
            "--batch-size",
            "2",
            "--output-dir",
            run,
        )
    assert result.exit_code == 0, result.stderr
    assert 0 < seen[0] <= 64  # training rows, the validation loss and the samples of each eval
    assert "4 of 4 prompts were longer than the budget of 64 tokens; each keeps its last 64" in result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["truncated"] == 4 and metrics["dropped_long"] == 0  # prompts lost their beginning, not the answer
    with longest_input() as seen:
        evaluated = cli("llm", "eval", "--run", run, "--max-new-tokens", "4")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert 0 < seen[0] <= 64 and "4 of 4 prompts were longer" in evaluated.stderr
    with longest_input() as seen:
        generated = cli("llm", "generate", "--run", run, "--prompt", long_question(0), "--max-new-tokens", "4")
    assert generated.exit_code == 0, generated.stderr
    assert 0 < seen[0] <= 64 and "1 of 1 prompts were longer" in generated.stderr
    problems = write_jsonl(
        tmp_path / "problems.jsonl", [{"question": long_question(i), "answer": "#### 3"} for i in range(2)]
    )
    with longest_input() as seen:
        reasoned = cli(
            "llm",
            "reason",
            "--run",
            run,
            "--data",
            problems,
            "--strategy",
            "direct",
            "--max-new-tokens",
            "4",
            "--output-dir",
            tmp_path / "reason",
        )
    assert reasoned.exit_code == 0, reasoned.stderr
    assert 0 < seen[0] <= 64 and "2 of 2 prompts were longer" in reasoned.stderr


def test_a_long_prompt_keeps_its_end_and_the_answer():
    from dlkit.llm.data import IGNORE, fit_length

    ids, labels = list(range(100)), [IGNORE] * 90 + list(range(90, 98)) + [IGNORE] * 2
    cut_ids, cut_labels = fit_length(ids, labels, 20)
    assert cut_ids == list(range(80, 100)) and cut_labels[-10:] == labels[-10:]
    long_answer = [IGNORE] * 10 + list(range(10, 100))  # the answer alone is longer than the budget
    assert fit_length(ids, long_answer, 20) == (ids[:20], long_answer[:20])
