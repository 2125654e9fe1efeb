"""`dlkit adapter eval` and `predict`: a trained run's model scored on its test split, or applied to sentences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlkit.adapter import data as tdata
from dlkit.adapter.config import AdapterConfig
from dlkit.adapter.models import load_trained
from dlkit.adapter.task import GROUP, forward, tokenize
from dlkit.core import classification as clf
from dlkit.core.errors import DataError
from dlkit.core.run import Run


def evaluate(run_dir: Path, batch_size: int = 64, split: str | None = None) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (binary and macro), confusion matrix and misclassified texts, on the
    run's test split (validation when the data has none; train when asked by name)."""
    run = Run.open(run_dir, group=GROUP)
    cfg = run.config_as(AdapterConfig)
    model, tokenizer, names = load_trained(run)
    text_data = tdata.load_text_data(cfg)
    part = clf.scored_part(run, split, text_data, names, cfg.data)
    texts, gold = part.examples.texts, part.examples.labels
    batches = []
    for start in range(0, len(texts), batch_size):
        batch = tokenize(tokenizer, texts[start:start + batch_size], cfg.max_length)
        batch["labels"] = torch.tensor(gold[start:start + batch_size], dtype=torch.long)
        batches.append(batch)
    logits, labels = clf.collect_logits(lambda b: forward(model, b), batches)
    return clf.write_evaluation(run, logits, labels, names, texts, split=part.source, example_header="text",
                                name=part.name, left_out=part.left_out)


def predict(run_dir: Path, texts: list[str], k: int = clf.TOP_K) -> list[dict[str, Any]]:
    """The most likely labels with probabilities for each sentence."""
    run = Run.open(run_dir, group=GROUP)
    model, tokenizer, names = load_trained(run)
    if not texts or any(not t.strip() for t in texts):
        raise DataError("predict needs at least one non-empty sentence")
    max_length = run.config_as(AdapterConfig).max_length
    with torch.no_grad():
        logits = forward(model, tokenize(tokenizer, texts, max_length))
    return [{"text": text, "label": top[0]["label"], "top": top}
            for text, top in zip(texts, clf.top_k(logits, names, k), strict=True)]
