"""The vit Task for the engine, and the train / eval / predict functions the CLI calls.

Loss, metrics and the test report come from dlkit.core.classification, shared with `dlkit adapter`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit.core import classification as clf
from dlkit.core.errors import DataError
from dlkit.core.run import Run
from dlkit.vit import data as vdata
from dlkit.vit import models
from dlkit.vit.config import VitConfig
from dlkit.vit.viz import mistakes_grid

GROUP = "vit"


def forward(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Logits (B, K); other image sizes than the model's interpolate its position embeddings."""
    config = getattr(model, "config", None)
    native = getattr(config, "image_size", None)
    kwargs = {"interpolate_pos_encoding": True} if native and pixel_values.shape[-1] != native else {}
    return model(pixel_values=pixel_values, **kwargs).logits


class VitTask:
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

    @property
    def skipped_items(self) -> int:
        return self.counter.get("skipped", 0)

    def build_model(self) -> nn.Module:
        model = models.load_classifier(self.model_path, self.data.label_names)
        self.model_type = model.config.model_type
        return models.apply_method(model, self.cfg)

    def datasets(self) -> tuple[vdata.ImageSet, vdata.ImageSet]:
        return (vdata.ImageSet(self.data.train, self.train_tf, self.counter),
                vdata.ImageSet(self.data.val, self.eval_tf, self.counter))

    def collate(self, examples: list[dict[str, Any] | None]) -> dict[str, torch.Tensor]:
        return vdata.collate(examples)

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        return clf.cross_entropy_step(forward(model, batch["pixel_values"]), batch["labels"])

    def evaluate(self, model: nn.Module, loader: Any, accel: Any) -> dict[str, float]:
        return clf.evaluate_classifier(lambda batch: forward(model, batch["pixel_values"]), loader, accel)

    def save_model(self, model: nn.Module, path: Path) -> None:
        if self.cfg.image_size:  # eval and predict then see what training saw
            side = self.image_size
            if getattr(self.processor, "do_center_crop", False) and getattr(self.processor, "crop_size", None):
                resize = round(vdata.processor_size(self.processor) * side / vdata.processor_size(self.processor,
                                                                                                  "crop_size"))
                self.processor.size = {"height": resize, "width": resize}
                self.processor.crop_size = {"height": side, "width": side}
            else:
                self.processor.size = {"height": side, "width": side}
        models.save_classifier(model, self.processor, path)

    def summary(self) -> dict[str, Any]:
        return {"method": self.cfg.method, "arch": self.model_type, "model": self.cfg.model, "data": self.cfg.data,
                "num_classes": len(self.data.label_names), "image_size": self.image_size,
                "train_samples": len(self.data.train), "val_samples": len(self.data.val)}


def train(cfg: VitConfig) -> dict[str, Any]:
    """Train, write the run folder, return metrics.json (trainable params and % per method included)."""
    from dlkit.core.engine import fit
    from dlkit.core.splits import DataSplits, record_splits

    task = VitTask(cfg)
    run = Run.create(GROUP, cfg, default_name=cfg.method)
    record_splits(run, DataSplits(vdata.split_ids(task.data), vdata.split_rule(task.data, cfg)), resume=cfg.resume)
    metrics = fit(task, cfg, run)
    clf.accuracy_curves(run)
    return metrics


def load_trained(run: Run) -> tuple[nn.Module, Any, list[str]]:
    """The run's final model (eval mode), its image processor and the class names in index order."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    if not (run.model_dir / "config.json").is_file():
        raise DataError(f"{run.dir}: no trained model in {run.model_dir}; did the training finish?")
    with clf.quiet_transformers():
        model = AutoModelForImageClassification.from_pretrained(str(run.model_dir)).eval()
    processor = AutoImageProcessor.from_pretrained(str(run.model_dir))
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return model, processor, names


def evaluate_run(run_dir: Path, batch_size: int = 64, split: str | None = None) -> dict[str, Any]:
    """Accuracy, top-5, per-class report, confusion matrix and mistakes on the run's held-out validation
    split (or the train split, when asked by name)."""
    from dlkit.core.splits import scored

    run = Run.open(run_dir, group=GROUP)
    cfg = run.config_as(VitConfig)
    model, processor, names = load_trained(run)
    image_data = vdata.load_image_data(cfg)
    if image_data.label_names != names:
        raise DataError(f"--data {cfg.data} now has classes {image_data.label_names[:5]}..., but the model in "
                        f"{run.dir} was trained on {names[:5]}...")
    name, keep = scored(run, split, vdata.split_ids(image_data))
    pool = image_data.train if name == "train" else image_data.val
    items = pool.select(keep)
    _, eval_tf, _ = vdata.transforms(processor, None, augment=False)
    counter: dict[str, int] = {}
    dataset = vdata.ImageSet(items, eval_tf, counter)
    order = list(range(len(dataset)))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    kept: list[str] = []

    def loader():
        for indices in batches:
            examples = [dataset[i] for i in indices]
            kept.extend(items.describe(i) for i, e in zip(indices, examples, strict=True) if e is not None)
            yield vdata.collate(examples)

    logits, labels = clf.collect_logits(lambda b: forward(model, b["pixel_values"]), _Sized(loader, len(batches)))
    source = "train" if name == "train" else image_data.val_split
    result = clf.write_evaluation(run, logits, labels, names, kept, split=source, example_header="image", name=name,
                                  left_out=len(pool) - len(items))
    result["metrics"]["skipped_items"] = counter.get("skipped", 0)
    if run.writer:
        index = {items.describe(i): i for i in range(len(items))}
        worst = [(items.load(index[row["image"]]), row) for row in result["misclassified"][:16]]
        mistakes_grid(worst, run.plots_dir / "mistakes.png")
    return result


class _Sized:
    def __init__(self, make, length: int):
        self.make, self.length = make, length

    def __iter__(self):
        return self.make()

    def __len__(self) -> int:
        return self.length


def predict(run_dir: Path, images: list[Path], k: int = clf.TOP_K) -> list[dict[str, Any]]:
    """Top-k labels with probabilities for each image (any mode: grayscale and RGBA are converted)."""
    run = Run.open(run_dir, group=GROUP)
    model, processor, names = load_trained(run)
    _, eval_tf, _ = vdata.transforms(processor, None, augment=False)
    pixels = []
    for path in images:
        if not Path(path).is_file():
            raise DataError(f"image {path}: no such file")
        try:
            pixels.append(eval_tf(vdata.open_image(Path(path))))
        except (OSError, ValueError, SyntaxError):
            raise DataError(f"image {path}: cannot be decoded as an image") from None
    with torch.no_grad():
        logits = forward(model, torch.stack(pixels))
    return [{"image": str(path), "top": top} for path, top in zip(images, clf.top_k(logits, names, k), strict=True)]
