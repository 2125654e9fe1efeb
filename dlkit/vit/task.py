"""The vit Task for the engine, and `train(cfg)`, the function behind `dlkit vit train`.

Loss, metrics and the test report come from dlkit.classify.classifier, shared with `dlkit adapter`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit.classify import classifier as clf
from dlkit.core import features
from dlkit.core.config import checked
from dlkit.core.modelcard import CardInfo
from dlkit.core.run import Run
from dlkit.core.splits import DataSplits, record_splits
from dlkit.core.task import Task
from dlkit.vit import data as vdata
from dlkit.vit import models
from dlkit.vit.config import VitConfig

GROUP = "vit"


def batch_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits (B, K) of a batch of images or of the frozen front's cached features."""
    if features.FEATURES in batch:
        return model(features=batch[features.FEATURES])
    return forward(model, batch["pixel_values"])


def forward(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Logits (B, K); other image sizes than the model's interpolate its position embeddings."""
    config = getattr(model, "config", None)
    native = getattr(config, "image_size", None)
    kwargs = {"interpolate_pos_encoding": True} if native and pixel_values.shape[-1] != native else {}
    return model(pixel_values=pixel_values, **kwargs).logits


class VitTask(Task):
    """Fine-tune an image classifier with one of the methods in dlkit.vit.models.METHODS."""

    def __init__(self, cfg: VitConfig):
        from transformers import AutoImageProcessor

        self.cfg = cfg
        self.model_path = models.model_folder(cfg.model)
        self.data = vdata.load_image_data(cfg)
        self.processor = AutoImageProcessor.from_pretrained(self.model_path)
        self.train_tf, self.eval_tf, self.image_size = vdata.transforms(self.processor, cfg.image_size, cfg.augment)
        self.counter: dict[str, int] = {}
        self.model_type = ""
        self.model: nn.Module | None = None
        self.front: features.FrozenFront | None = None
        self.cached = False

    @property
    def skipped_items(self) -> int:  # type: ignore[override]  # counted while the images load
        return self.counter.get("skipped", 0)

    def build_model(self) -> nn.Module:
        model = models.load_classifier(self.model_path, self.data.label_names)
        self.model_type = model.config.model_type
        self.model = models.apply_method(model, self.cfg)
        self.front = models.frozen_front(self.model, self.cfg.method)
        if self.front is not None:  # frozen features on both paths: dropout and the like off in the front
            features.hold_eval(self.front.modules)
        return self.model

    def datasets(self) -> tuple[Any, Any]:
        train = vdata.ImageSet(self.data.train, self.train_tf, self.counter)
        val = vdata.ImageSet(self.data.val, self.eval_tf, self.counter)
        model = self.model
        train_set, val_set, self.cached = features.cached_or_raw(
            self.cfg,
            model,
            self.front,
            train,
            val,
            vdata.collate,
            forward=lambda batch: forward(model, batch["pixel_values"]),
            fields=lambda batch: {"labels": batch["labels"]},
            deterministic=not self.cfg.augment,
        )
        return train_set, val_set

    def collate(self, examples: list[dict[str, Any] | None]) -> dict[str, torch.Tensor]:
        return features.collate(examples) if features.is_cached(examples) else vdata.collate(examples)

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        return clf.cross_entropy_step(batch_logits(model, batch), batch["labels"])

    def evaluate(self, model: nn.Module, loader: Any, accel: Any) -> dict[str, float]:
        return clf.evaluate_classifier(lambda batch: batch_logits(model, batch), loader, accel)

    def save_model(self, model: nn.Module, path: Path) -> None:
        if self.cfg.image_size:  # eval and predict then see what training saw
            side = self.image_size
            if getattr(self.processor, "do_center_crop", False) and getattr(self.processor, "crop_size", None):
                resize = round(
                    vdata.processor_size(self.processor) * side / vdata.processor_size(self.processor, "crop_size")
                )
                self.processor.size = {"height": resize, "width": resize}
                self.processor.crop_size = {"height": side, "width": side}
            else:
                self.processor.size = {"height": side, "width": side}
        models.save_classifier(model, self.processor, path, self.trained_names(model), self.cfg.model)

    def card_info(self) -> CardInfo:
        what = f"image classifier ({self.cfg.method} fine-tune)"
        if self.cfg.method == "lora":
            return CardInfo(
                what=what,
                pipeline_tag="image-classification",
                library_name="peft",
                base_relation="adapter",
                tags=["peft", "lora"],
                usage="from peft import PeftModel\nfrom transformers import AutoConfig, "
                "AutoImageProcessor, AutoModelForImageClassification\n\n"
                "config = AutoConfig.from_pretrained(FOLDER_OR_REPO_ID)  # the labels\n"
                "base = AutoModelForImageClassification.from_pretrained(BASE, config=config)\n"
                "model = PeftModel.from_pretrained(base, FOLDER_OR_REPO_ID)  # with the classifier\n"
                "processor = AutoImageProcessor.from_pretrained(FOLDER_OR_REPO_ID)",
            )
        if self.cfg.method != "full":
            return CardInfo(
                what=what,
                pipeline_tag="image-classification",
                usage_language="bash",
                usage="# the trained tensors (trained.safetensors) on the base named in trained.json; "
                "plain transformers weights:\ndlkit vit export --run RUN --out plain/   # RUN: the "
                "run folder around this one",
            )
        return CardInfo(
            what=what,
            pipeline_tag="image-classification",
            library_name="transformers",
            base_relation="finetune",
            usage="from transformers import AutoImageProcessor, AutoModelForImageClassification\n\n"
            "model = AutoModelForImageClassification.from_pretrained(FOLDER_OR_REPO_ID)\n"
            "processor = AutoImageProcessor.from_pretrained(FOLDER_OR_REPO_ID)\n"
            "# config.json's id2label names the classes",
        )

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.cfg.method,
            "arch": self.model_type,
            "model": self.cfg.model,
            "data": self.cfg.data,
            "num_classes": len(self.data.label_names),
            "image_size": self.image_size,
            "cached_features": self.cached,
            **self.data.sizes(),
        }


def train(cfg: VitConfig) -> dict[str, Any]:
    """Train, write the run folder, return metrics.json (trainable params and % per method included)."""
    from dlkit.core.engine import fit

    checked(cfg)
    task = VitTask(cfg)
    run = Run.create(GROUP, cfg, default_name=cfg.method)
    record_splits(run, DataSplits(task.data.ids(), task.data.rule(cfg)), resume=cfg.resume)
    metrics = fit(task, cfg, run)
    clf.accuracy_curves(run)
    return metrics
