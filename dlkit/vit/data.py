"""Image classification data: an ImageFolder, a Hub dataset or builtin:digits, as (image, label) items.

Labels come from the data (folder names, or a ClassLabel feature), never from the model. Images are read
lazily; one that fails to decode is skipped and counted, not fatal. Every image is converted to RGB
(grayscale, palette and RGBA alike; transparency is composited onto white).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlkit.builtin import BUILTINS
from dlkit.classify.classifier import ClassifierData, check_classes, cut_splits, leave_out_test, named_splits
from dlkit.core.errors import DataError
from dlkit.core.sources import resolve
from dlkit.data.images import IMAGE_SUFFIXES, check_decodable, open_image, to_rgb


@dataclass
class ImageItems:
    """A list of labelled images: local paths, or rows of a Hub dataset split."""

    labels: list[int]
    paths: list[Path] | None = None
    hub_split: Any = None  # a datasets.Dataset
    hub_name: str = ""
    image_col: str = "image"
    rows: list[int] = field(default_factory=list)  # rows of hub_split

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> Any:
        if self.paths is not None:
            return open_image(self.paths[i])
        return to_rgb(self.hub_split[self.rows[i]][self.image_col])

    def describe(self, i: int) -> str:
        return str(self.paths[i]) if self.paths is not None else f"{self.hub_name}[{self.rows[i]}]"

    def example_ids(self) -> list[str]:
        """Image paths, or DATASET:SPLIT[ROW] for Hub rows."""
        return [self.describe(i) for i in range(len(self))]

    def select(self, indices: list[int]) -> ImageItems:
        return ImageItems(
            [self.labels[i] for i in indices],
            [self.paths[i] for i in indices] if self.paths is not None else None,
            self.hub_split,
            self.hub_name,
            self.image_col,
            [self.rows[i] for i in indices] if self.paths is None else [],
        )


def load_image_data(cfg: Any) -> ClassifierData:
    """Train, validation and (when the data has one) test items for `cfg.data`; without a validation split a
    seeded share of each class of train is held out for validation."""
    source = resolve(cfg.data, "data", flag="--data")
    if source.kind == "builtin":
        names, found = image_folder(Path(BUILTINS[source.value].load()))
    elif source.kind == "local":
        if not source.path.is_dir():
            raise DataError(f"--data {source.spec}: expected an ImageFolder directory (CLASS/IMAGE.png), got a file")
        names, found = image_folder(source.path)
    else:
        names, found = hub_images(source.value, cfg.image_col, cfg.label_col)
    val_split, test_split = named_splits(found)
    read = ClassifierData(
        found["train"],
        found[val_split] if val_split else None,
        names,
        val_split or "",
        found[test_split] if test_split else None,
        test_split or "",
    )
    data = cut_splits(cfg, read, "train", cfg.data)
    if len(data.train) == 0:
        raise DataError(f"--data {cfg.data}: no training images")
    for name, part in (("training", data.train), ("validation", data.val)):
        check_decodable(part.load, len(part), f"--data {cfg.data} ({name} split)")
    return data


def image_folder(root: Path) -> tuple[list[str], dict[str, ImageItems]]:
    """The class names and the splits of root/CLASS/IMAGE (train only), or of root/train/CLASS/IMAGE with optional
    root/{validation,val,valid,dev}/ and root/test/ of CLASS/IMAGE. A test/ of images without class folders
    (unlabelled) is left out, with a warning."""
    if not (root / "train").is_dir():
        names, train = _scan(root)
        return names, {"train": train}
    names, train = _scan(root / "train")
    found = {"train": train}
    val_split, test_split = named_splits(p.name for p in root.iterdir() if p.is_dir())
    for split in (val_split, test_split):
        if split is None:
            continue
        if split == test_split and not _class_folders(root / split):
            leave_out_test(f"{root / split} has no class folders (unlabelled images)")
            continue
        found[split] = _scan(root / split, known=names)[1]
    return names, found


def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(folder: Path, known: list[str] | None = None) -> tuple[list[str], ImageItems]:
    classes = _class_folders(folder)
    if not classes:
        raise DataError(f"--data {folder}: no class folders; expected {folder}/CLASS_NAME/IMAGE.png")
    names = known if known is not None else classes
    if known is None:
        check_classes(classes, f"--data {folder}")
    index = {name: i for i, name in enumerate(names)}
    paths, labels = [], []
    for name in classes:
        if name not in index:
            raise DataError(
                f"--data {folder}/{name}: class {name!r} is not among the training classes "
                f"({', '.join(names[:10])}{', ...' if len(names) > 10 else ''})"
            )
        for path in sorted((folder / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(path)
                labels.append(index[name])
    if not paths:
        raise DataError(f"--data {folder}: the class folders hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return names, ImageItems(labels, paths)


def hub_images(repo_id: str, image_col: str | None, label_col: str | None) -> tuple[list[str], dict[str, ImageItems]]:
    """A Hub image dataset (food101, cifar10, ...) through datasets.load_dataset."""
    from datasets import ClassLabel, Image, load_dataset

    splits = load_dataset(repo_id)
    if "train" not in splits:
        raise DataError(f"--data {repo_id}: no 'train' split (found: {', '.join(splits)})")
    features = splits["train"].features
    image_col = image_col or next((k for k, v in features.items() if isinstance(v, Image)), None)
    if image_col is None or image_col not in features:
        raise DataError(f"--data {repo_id}: no image column (columns: {', '.join(features)}); pass --image-col")
    label_col = label_col or next((k for k, v in features.items() if isinstance(v, ClassLabel)), None)
    if label_col is None or label_col not in features:
        raise DataError(f"--data {repo_id}: no label column (columns: {', '.join(features)}); pass --label-col")
    if isinstance(features[label_col], ClassLabel):
        names = list(features[label_col].names)
        to_index: dict[Any, int] = {i: i for i in range(len(names))}
    else:
        names = sorted({str(v) for v in splits["train"][label_col] if v is not None})
        to_index = {v: i for i, v in enumerate(names)}
    check_classes(names, f"--data {repo_id} column {label_col!r}")
    unlabelled = (None, -1)  # datasets' ClassLabel writes -1 for a row without a label (a hidden test split)

    def items(split: str) -> ImageItems:
        """The split's labelled rows."""
        column = splits[split][label_col]
        keys = [v if isinstance(features[label_col], ClassLabel) or v is None else str(v) for v in column]
        unknown = next((key for key in keys if key not in unlabelled and key not in to_index), None)
        if unknown is not None:
            raise DataError(
                f"--data {repo_id}:{split} column {label_col!r}: label {unknown!r} is not among the training classes"
            )
        rows = [row for row, key in enumerate(keys) if key not in unlabelled]
        return ImageItems(
            [to_index[keys[row]] for row in rows], None, splits[split], f"{repo_id}:{split}", image_col, rows
        )

    found = {"train": items("train")}
    val_split, test_split = named_splits(splits)
    if val_split:
        found[val_split] = items(val_split)
        if not len(found[val_split]):
            raise DataError(f"--data {repo_id}: the {val_split} split has no labelled row")
    if test_split:
        test = items(test_split)
        if len(test):
            found[test_split] = test
        else:
            leave_out_test(f"--data {repo_id}: the {test_split} split has no labels")
    return names, found


class ImageSet:
    """A torch Dataset over ImageItems; an undecodable image yields None (dropped by `collate`, counted)."""

    def __init__(self, items: ImageItems, transform: Any, counter: dict[str, int]):
        self.items, self.transform, self.counter = items, transform, counter

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        try:
            image = self.items.load(i)
        except (DataError, OSError, ValueError, SyntaxError):  # unreadable files, PIL's errors for Hub images
            self.counter["skipped"] = self.counter.get("skipped", 0) + 1
            return None
        return {"pixel_values": self.transform(image), "labels": self.items.labels[i]}


def collate(examples: list[dict[str, Any] | None]) -> dict[str, Any]:
    import torch

    kept = [e for e in examples if e is not None]
    if not kept:
        return {"pixel_values": torch.zeros(0, 3, 1, 1), "labels": torch.zeros(0, dtype=torch.long)}
    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in kept]),
        "labels": torch.tensor([e["labels"] for e in kept], dtype=torch.long),
    }


def transforms(processor: Any, image_size: int | None, augment: bool) -> tuple[Any, Any, int]:
    """(train, eval) torchvision transforms from the model's image processor, and the side the model sees.

    The processor gives the resize, the centre crop (DeiT: resize 256, crop 224) and mean/std; --image-size
    replaces the side the model sees (the crop when there is one) and scales the resize with it.
    """
    from torchvision import transforms as T

    resize, crop = processor_size(processor, "size"), None
    if getattr(processor, "do_center_crop", False) and getattr(processor, "crop_size", None):
        crop = processor_size(processor, "crop_size")
    side = image_size or crop or resize
    if image_size and crop:
        resize = round(resize * image_size / crop)
    steps = [T.ToTensor()]
    if getattr(processor, "do_normalize", True):
        steps.append(T.Normalize(processor.image_mean, processor.image_std))
    if crop:
        eval_tf = T.Compose([T.Resize(resize), T.CenterCrop(side), *steps])
    else:
        eval_tf = T.Compose([T.Resize((side, side)), *steps])
    if not augment:
        return eval_tf, eval_tf, side
    train_tf = T.Compose(
        [
            T.RandomResizedCrop(side, scale=(0.8, 1.0), ratio=(0.9, 1.1)),
            T.ColorJitter(brightness=0.2, contrast=0.2),
            *steps,
        ]
    )
    return train_tf, eval_tf, side


def processor_size(processor: Any, attribute: str = "size") -> int:
    size = getattr(processor, attribute)
    if isinstance(size, dict):
        return int(size.get("height") or size.get("shortest_edge") or next(iter(size.values())))
    return int(getattr(size, "height", None) or getattr(size, "shortest_edge", None) or size)
