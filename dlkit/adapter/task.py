"""The adapter Task for the engine, and `train(cfg)`, the function behind `dlkit adapter train`.

Loss, metrics and the test report come from dlkit.classify.classifier, shared with `dlkit vit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit.adapter import data as tdata
from dlkit.adapter import models
from dlkit.adapter.config import AdapterConfig
from dlkit.classify import classifier as clf
from dlkit.core import features
from dlkit.core.config import checked
from dlkit.core.modelcard import CardInfo
from dlkit.core.run import Run
from dlkit.core.splits import DataSplits, record_splits
from dlkit.core.task import Task

GROUP = "adapter"


def forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits (B, K) of tokenized texts or of the frozen encoder's cached features."""
    if features.FEATURES in batch:
        return model(features=batch[features.FEATURES])
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def tokenize(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    return dict(tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


class AdapterTask(Task):
    """Fine-tune a text classifier with bottleneck adapters, its head only, or fully."""

    def __init__(self, cfg: AdapterConfig):
        from transformers import AutoConfig, AutoTokenizer

        self.cfg = cfg
        self.model_path = models.model_folder(cfg.model)
        self.settings = models.adapter_settings(cfg, AutoConfig.from_pretrained(self.model_path))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.data = tdata.load_text_data(cfg)
        self.skipped_items = self.data.skipped
        self.model_type = ""
        self.model: nn.Module | None = None
        self.front: features.FrozenFront | None = None
        self.cached = False

    def build_model(self) -> nn.Module:
        self.model = models.build(self.model_path, self.data.label_names, self.cfg.method, self.settings)
        self.model_type = self.model.config.model_type
        self.front = models.frozen_front(self.model, self.cfg.method)
        if self.front is not None:  # frozen features on both paths: the encoder's dropout off
            features.hold_eval(self.front.modules)
        return self.model

    def datasets(self) -> tuple[Any, Any]:
        train, val = tdata.TextSet(self.data.train), tdata.TextSet(self.data.val)
        model = self.model
        train_set, val_set, self.cached = features.cached_or_raw(
            self.cfg,
            model,
            self.front,
            train,
            val,
            self.collate,
            forward=lambda batch: forward(model, batch),
            fields=lambda batch: {"labels": batch["labels"], "tokens": batch["attention_mask"].sum(dim=1)},
        )
        return train_set, val_set

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if features.is_cached(examples):
            return features.collate(examples)
        batch = tokenize(self.tokenizer, [e["text"] for e in examples], self.cfg.max_length)
        batch["labels"] = torch.tensor([e["labels"] for e in examples], dtype=torch.long)
        return batch

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        loss, logs = clf.cross_entropy_step(forward(model, batch), batch["labels"])
        logs["tokens"] = batch["tokens"].sum() if "tokens" in batch else batch["attention_mask"].sum()
        return loss, logs

    def evaluate(self, model: nn.Module, loader: Any, accel: Any) -> dict[str, float]:
        return clf.evaluate_classifier(lambda batch: forward(model, batch), loader, accel)

    def save_model(self, model: nn.Module, path: Path) -> None:
        models.save(model, self.tokenizer, self.settings, path, self.trained_names(model), self.cfg.model)

    def card_info(self) -> CardInfo:
        what = f"text classifier ({self.cfg.method} fine-tune)"
        if self.cfg.method != "full":  # what trained (dlkit's bottleneck adapters, norms, head) on the base
            return CardInfo(
                what=what,
                pipeline_tag="text-classification",
                usage_language="bash",
                tags=["adapters"] if self.settings is not None else [],
                usage="# what trained (trained.safetensors; adapters.json: where the adapters go) on the "
                "base named in trained.json, read by:\ndlkit adapter predict --run RUN 'a sentence "
                "to classify'   # RUN: the run folder around this one",
            )
        return CardInfo(
            what=what,
            pipeline_tag="text-classification",
            library_name="transformers",
            base_relation="finetune",
            usage="from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
            "model = AutoModelForSequenceClassification.from_pretrained(FOLDER_OR_REPO_ID)\n"
            "tokenizer = AutoTokenizer.from_pretrained(FOLDER_OR_REPO_ID)",
        )

    def summary(self) -> dict[str, Any]:
        out = {
            "method": self.cfg.method,
            "arch": self.model_type,
            "model": self.cfg.model,
            "data": self.cfg.data,
            "num_classes": len(self.data.label_names),
            "cached_features": self.cached,
            **self.data.sizes(),
        }
        if self.settings is not None:
            out.update(placement=self.cfg.placement, bottleneck=self.cfg.bottleneck, layers=self.cfg.layers)
        return out


def train(cfg: AdapterConfig) -> dict[str, Any]:
    """Train, write the run folder, return metrics.json."""
    from dlkit.core.engine import fit

    checked(cfg)
    task = AdapterTask(cfg)
    run = Run.create(GROUP, cfg, default_name=cfg.method if cfg.method != "adapter" else cfg.placement)
    record_splits(run, DataSplits(task.data.ids(), task.data.rule(cfg)), resume=cfg.resume)
    metrics = fit(task, cfg, run)
    clf.accuracy_curves(run)
    return metrics
