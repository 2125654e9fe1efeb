"""Every training forward runs in train mode: dropout is on from the first step, for models that
`from_pretrained` hands over in eval mode (qa, adapter, llm with a base dropout > 0, vit)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn


def has_dropout(module: nn.Module) -> bool:
    """An nn.Dropout with p > 0, or an attention module whose dropout rate is a number > 0 (Llama applies it
    inside scaled_dot_product_attention, only when the module is in train mode)."""
    if isinstance(module, nn.Dropout):
        return module.p > 0
    rate = getattr(module, "attention_dropout", None)
    return isinstance(rate, float) and rate > 0


@contextmanager
def dropout_forwards():
    """Counts of forwards through dropout with gradients on, by the module's mode ('train' / 'eval')."""
    counts: Counter = Counter()

    def hook(module: nn.Module, args: tuple) -> None:
        if torch.is_grad_enabled() and has_dropout(module):
            counts["train" if module.training else "eval"] += 1

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield counts
    finally:
        handle.remove()


def with_dropout(tmp_path: Path, builtin: str, **config: float) -> Path:
    """A copy of a builtin model folder whose config turns dropout on."""
    from dlkit.builtin import BUILTINS

    folder = tmp_path / builtin
    shutil.copytree(BUILTINS[builtin].load(), folder)
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return folder


def group_args(group: str, tmp_path: Path) -> list:
    if group == "qa":  # tiny-bert: hidden and attention dropout 0.1; 100 builtin questions
        from dlkit.qa.data import load_splits
        from dlkit.qa.prepare import write_jsonl

        write_jsonl(tmp_path / "qa.jsonl", load_splits("builtin:qa-synthetic")["train"][:100])
        return ["--data", tmp_path / "qa.jsonl", "--max-length", "48", "--doc-stride", "16", "--batch-size", "8"]
    if group == "adapter":  # tiny-roberta: hidden and attention dropout 0.1
        return ["--max-train-samples", "64", "--max-eval-samples", "16", "--batch-size", "8"]
    if group == "llm":
        return [
            "--model",
            with_dropout(tmp_path, "tiny-llama", attention_dropout=0.1),
            "--method",
            "lora",
            "--batch-size",
            "8",
            "--val-size",
            "8",
            "--test-size",
            "4",
            "--limit",
            "80",
        ]
    return [
        "--model",
        with_dropout(tmp_path, "tiny-vit", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
        "--method",
        "lora",
        "--max-train-samples",
        "64",
        "--max-eval-samples",
        "16",
        "--batch-size",
        "8",
    ]


@pytest.mark.parametrize("group", ["qa", "adapter", "llm", "vit"])
def test_dropout_is_on_for_every_training_forward(cli, tmp_path, group):
    with dropout_forwards() as counts:
        result = cli(
            group,
            "train",
            "--output-dir",
            tmp_path / "run",
            "--max-steps",
            "4",
            "--save-every",
            "100",
            *group_args(group, tmp_path),
        )
    assert result.exit_code == 0, result.stderr
    assert counts["train"] > 0 and counts["eval"] == 0, dict(counts)
