"""`dlkit adapter eval` and `predict`: a trained run's model scored on its test split, or applied to sentences."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from dlkit.adapter import data as tdata
from dlkit.adapter.config import AdapterConfig
from dlkit.adapter.models import load_trained
from dlkit.adapter.task import GROUP, forward, tokenize
from dlkit.classify import classifier as clf
from dlkit.core.config import checked
from dlkit.core.errors import DataError
from dlkit.core.run import Run


class TextsToClassify(clf.PredictSettings, Protocol):
    texts: list[str]


def evaluate(cfg: clf.EvalSettings) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (binary and macro), confusion matrix and misclassified texts, on the
    run's test split (validation when the data has none; train when asked by name)."""
    checked(cfg)
    batch_size = cfg.batch_size
    run = Run.open(cfg.run, group=GROUP)
    trained = run.config_as(AdapterConfig)
    model, tokenizer, names = load_trained(run)
    text_data = tdata.load_text_data(trained)
    part = clf.scored_part(run, cfg.split, text_data, names, trained.data)
    texts, gold = part.examples.texts, part.examples.labels
    batches = []
    for start in range(0, len(texts), batch_size):
        batch = tokenize(tokenizer, texts[start : start + batch_size], trained.max_length)
        batch["labels"] = torch.tensor(gold[start : start + batch_size], dtype=torch.long)
        batches.append(batch)
    logits, labels = clf.collect_logits(lambda b: forward(model, b), batches)
    return clf.write_evaluation(
        run,
        logits,
        labels,
        names,
        texts,
        split=part.source,
        example_header="text",
        name=part.name,
        left_out=part.left_out,
    )


def predict(cfg: TextsToClassify) -> list[dict[str, Any]]:
    """The most likely labels with probabilities for each sentence."""
    checked(cfg)
    texts, k = cfg.texts, cfg.top_k
    if not texts or any(not t.strip() for t in texts):
        raise DataError("predict needs at least one non-empty sentence")
    run = Run.open(cfg.run, group=GROUP)
    model, tokenizer, names = load_trained(run)
    max_length = run.config_as(AdapterConfig).max_length
    with torch.no_grad():
        logits = forward(model, tokenize(tokenizer, texts, max_length))
    return [
        {"text": text, "label": top[0]["label"], "top": top}
        for text, top in zip(texts, clf.top_k(logits, names, k), strict=True)
    ]
