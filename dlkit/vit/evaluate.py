"""`dlkit vit eval` and `predict`: a trained run's model scored on its test split, or applied to images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from dlkit.classify import classifier as clf
from dlkit.core.config import checked
from dlkit.core.errors import DataError
from dlkit.core.run import Run
from dlkit.data.images import open_image
from dlkit.vit import data as vdata
from dlkit.vit.config import VitConfig
from dlkit.vit.models import load_trained
from dlkit.vit.task import GROUP, forward
from dlkit.vit.viz import mistakes_grid


class ImagesToClassify(clf.PredictSettings, Protocol):
    images: list[str]


def evaluate(cfg: clf.EvalSettings) -> dict[str, Any]:
    """Accuracy, top-5, per-class report, confusion matrix and mistakes on the run's test split
    (validation when the data has none; train when asked by name)."""
    checked(cfg)
    batch_size, split = cfg.batch_size, cfg.split
    run = Run.open(cfg.run, group=GROUP)
    trained = run.config_as(VitConfig)
    model, processor, names = load_trained(run)
    image_data = vdata.load_image_data(trained)
    part = clf.scored_part(run, split, image_data, names, trained.data)
    items = part.examples
    _, eval_tf, _ = vdata.transforms(processor, None, augment=False)
    counter: dict[str, int] = {}
    dataset = vdata.ImageSet(items, eval_tf, counter)
    order = list(range(len(dataset)))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    kept: list[str] = []

    def loader():
        for indices in batches:
            examples = [dataset[i] for i in indices]
            kept.extend(items.describe(i) for i, e in zip(indices, examples, strict=True) if e is not None)
            yield vdata.collate(examples)

    logits, labels = clf.collect_logits(lambda b: forward(model, b["pixel_values"]), _Sized(loader, len(batches)))
    result = clf.write_evaluation(
        run,
        logits,
        labels,
        names,
        kept,
        split=part.source,
        example_header="image",
        name=part.name,
        left_out=part.left_out,
    )
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


def predict(cfg: ImagesToClassify) -> list[dict[str, Any]]:
    """Top-k labels with probabilities for each image (any mode: grayscale and RGBA are converted)."""
    checked(cfg)
    images, k = [Path(p) for p in cfg.images], cfg.top_k
    run = Run.open(cfg.run, group=GROUP)
    model, processor, names = load_trained(run)
    _, eval_tf, _ = vdata.transforms(processor, None, augment=False)
    pixels = []
    for path in images:
        try:
            pixels.append(eval_tf(open_image(Path(path))))
        except DataError:
            raise DataError(f"image {path}: cannot be decoded as an image") from None
    with torch.no_grad():
        logits = forward(model, torch.stack(pixels))
    return [{"image": str(path), "top": top} for path, top in zip(images, clf.top_k(logits, names, k), strict=True)]
