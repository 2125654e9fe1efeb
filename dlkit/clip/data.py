"""Labelled images for CLIP classification: an ImageFolder (optionally with train/ and test/ split folders),
a torchvision CIFAR-10 folder, a Hub dataset, or builtin:shape-classes, read as a list of image paths and
labels. CIFAR-10 and Hub datasets are written once as an ImageFolder in the cache, so every source has
paths: features are cached per file and undecodable files are skipped and counted while encoding.

Images are decoded with dlkit.data.images.open_image, the image reader caption and vit use too.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from dlkit.core.errors import DataError
from dlkit.core.sources import cached_folder
from dlkit.core.splits import canonical, split_in_name
from dlkit.data.images import IMAGE_SUFFIXES, open_image

SPLIT_NAMES = ("train", "test", "val", "validation", "valid")


@dataclass
class LabeledImages:
    """Images with integer labels; `classes` are the display names (cleaned or from --classnames)."""

    paths: list[str]
    labels: list[int]
    classes: list[str]
    folders: list[str]  # the class folder names, in label order
    where: str  # the folder these came from, for messages
    split: str = "all"  # which split of the data they are: a split folder's name, else the folder's, else all

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, indices: list[int]) -> LabeledImages:
        return LabeledImages(
            [self.paths[i] for i in indices],
            [self.labels[i] for i in indices],
            self.classes,
            self.folders,
            self.where,
            self.split,
        )

    def fingerprint(self) -> str:
        """Changes when any file is added, removed, replaced or relabelled (the feature-cache key)."""
        digest = hashlib.sha1()
        for path, label in zip(self.paths, self.labels, strict=True):
            stat = Path(path).stat() if Path(path).exists() else None
            digest.update(
                f"{path}|{label}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}\n".encode()
            )
        return digest.hexdigest()


def clean_class_name(folder: str) -> str:
    """`n02085620-Chihuahua` -> 'chihuahua', `001.Black_footed_Albatross` -> 'black footed albatross'."""
    name = re.sub(r"^n\d{8}[-_]", "", folder)  # WordNet ids (ImageNet, Stanford Dogs)
    name = re.sub(r"^\d+[._-]", "", name)  # numbered folders (CUB)
    return " ".join(re.sub(r"[_\-]+", " ", name).split()).lower()


def load_split(spec: str, split: str | None = None, classnames: str | None = None) -> LabeledImages:
    """The images of one split. A root with split folders needs `split`; a plain ImageFolder is one split, named
    by its folder (~/dogs/test is test) or else `all`."""
    from dataclasses import replace

    root = data_root(spec)
    splits = [s for s in SPLIT_NAMES if (root / s).is_dir()]
    if splits:
        if split not in splits:
            raise DataError(f"--data {spec}: no {split!r} split folder; found {', '.join(splits)}")
        return replace(read_image_folder(root / split, spec, classnames), split=canonical(split))
    return replace(read_image_folder(root, spec, classnames), split=split_in_name(str(spec)))


def load_train_test(
    spec: str, train_split: str, test_split: str, classnames: str | None, holdout: float, seed: int
) -> tuple[LabeledImages, LabeledImages, str]:
    """Train and test images and the rule in words; without split folders, `holdout` of each class (seeded)
    is the test set."""
    root = data_root(spec)
    if any((root / s).is_dir() for s in SPLIT_NAMES):
        train = load_split(spec, train_split, classnames)
        test = load_split(spec, test_split, classnames)
        if test.folders != train.folders:
            raise DataError(f"--data {spec}: {train_split}/ and {test_split}/ have different class folders")
        return train, test, f"train from {train_split}/, test from {test_split}/"
    images = read_image_folder(root, spec, classnames)
    train, test = hold_out_per_class(images, holdout, random.Random(seed))
    return train, test, f"seeded: {holdout:.0%} of each class held out for test (seed {seed})"


def hold_out_per_class(
    images: LabeledImages, fraction: float, rng: random.Random
) -> tuple[LabeledImages, LabeledImages]:
    """(kept, held out): `fraction` of each class, at least one image of every class that has two."""
    kept, held = [], []
    for label in range(len(images.classes)):
        members = [i for i, y in enumerate(images.labels) if y == label]
        rng.shuffle(members)
        cut = max(1, round(len(members) * fraction)) if len(members) > 1 else 0
        held += members[:cut]
        kept += members[cut:]
    return images.select(sorted(kept)), images.select(sorted(held))


def data_root(spec: str) -> Path:
    """A local folder for any source: builtins and Hub/CIFAR-10 data are materialised in the cache."""
    from dlkit.core.sources import resolve

    source = resolve(spec, "data", flag="--data")
    if source.kind == "builtin":
        from dlkit.builtin import BUILTINS

        root = Path(BUILTINS[source.value].load())
        if not root.is_dir() or (root / "captions.txt").is_file():
            raise DataError(f"--data {spec} is not a labelled image set; use builtin:shape-classes")
        return root
    if source.kind == "hub":
        return _hub_to_folder(source.value)
    path = source.path
    if not path.is_dir():
        raise DataError(f"--data {spec}: expected a folder of class subfolders, got a file")
    cifar = path if (path / "batches.meta").is_file() else path / "cifar-10-batches-py"
    if (cifar / "batches.meta").is_file():
        return _cifar_to_folder(cifar)
    return path


def read_image_folder(folder: Path, spec: str, classnames: str | None = None) -> LabeledImages:
    """folder/CLASS/IMAGE; hidden folders ignored; class order is the sorted folder names."""
    folders = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"--data {spec}: {folder} has no class folders (expected {folder}/CLASS_NAME/IMAGE.jpg)")
    paths, labels = [], []
    for label, name in enumerate(folders):
        for path in sorted((folder / name).iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(str(path))
                labels.append(label)
    if not paths:
        raise DataError(
            f"--data {spec}: the class folders of {folder} hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    used = sorted(set(labels))
    if len(used) < 2:
        raise DataError(
            f"--data {spec}: {folder} has images of {len(used)} class ({folders[used[0]]}); "
            "zero-shot classification needs at least 2 classes"
        )
    classes = read_classnames(classnames, len(folders)) if classnames else [clean_class_name(f) for f in folders]
    return LabeledImages(paths, labels, classes, folders, str(folder))


def read_classnames(file: str, expected: int) -> list[str]:
    path = Path(file).expanduser()
    if not path.is_file():
        raise DataError(f"--classnames {file}: no such file")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) != expected:
        raise DataError(
            f"--classnames {file}: {len(names)} names for {expected} class folders; "
            "give one name per line, in the order of the sorted folder names"
        )
    return names


# -- sources written once as ImageFolders in the cache -----------------------------------------------


def _cifar_to_folder(folder: Path) -> Path:
    """torchvision's CIFAR-10 (`cifar-10-batches-py`) as train/ and test/ ImageFolders of PNGs."""
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:10]

    def write(root: Path) -> None:
        from torchvision.datasets import CIFAR10

        for split, train in (("train", True), ("test", False)):
            dataset = CIFAR10(str(folder.parent), train=train, download=False)
            for index, (image, label) in enumerate(dataset):
                out = root / split / f"{label}_{dataset.classes[label]}"
                out.mkdir(parents=True, exist_ok=True)
                image.save(out / f"{index:05d}.png")

    return cached_folder(f"clip-data/cifar10-{digest}", write)


def _hub_to_folder(repo_id: str) -> Path:
    """A Hub dataset with an Image column and a ClassLabel column, as split ImageFolders."""
    digest = hashlib.sha1(repo_id.encode()).hexdigest()[:10]

    def write(root: Path) -> None:
        from datasets import ClassLabel, DatasetDict, Image, load_dataset

        dataset = load_dataset(repo_id)
        splits = dataset if isinstance(dataset, DatasetDict) else {"test": dataset}
        for split, part in splits.items():
            image_col = next((k for k, f in part.features.items() if isinstance(f, Image)), None)
            label_col = next((k for k, f in part.features.items() if isinstance(f, ClassLabel)), None)
            if image_col is None or label_col is None:
                raise DataError(
                    f"--data {repo_id}: split {split!r} needs an Image and a ClassLabel column "
                    f"(found {', '.join(part.features)})"
                )
            names = part.features[label_col].names
            for index, row in enumerate(part):
                out = root / split / names[row[label_col]].replace("/", "_")
                out.mkdir(parents=True, exist_ok=True)
                row[image_col].convert("RGB").save(out / f"{index:06d}.png")

    return cached_folder(f"clip-data/hub-{re.sub(r'[^A-Za-z0-9._-]+', '--', repo_id)}-{digest}", write)


class ImageCaptionPairs(Dataset):
    """(image, caption tokens, image index) for every caption. Each image has several captions, so decoded
    images are kept in memory up to a budget (small sets like builtin:shapes fit whole)."""

    MEMO_PIXELS = 64_000_000  # ~190 MB of RGB

    def __init__(self, images: list[str], tokens: torch.Tensor, owners: list[int], transform: Any):
        self.images, self.tokens, self.owners, self.transform = images, tokens, owners, transform
        self.memo: dict[int, Any] = {}
        self.memo_pixels = 0

    def __len__(self) -> int:
        return len(self.owners)

    def __getitem__(self, index: int):
        owner = self.owners[index]
        return self.transform(self.image(owner)), self.tokens[index], owner

    def image(self, owner: int) -> Any:
        if owner in self.memo:
            return self.memo[owner]
        image = open_image(self.images[owner])
        if self.memo_pixels + image.width * image.height <= self.MEMO_PIXELS:
            self.memo[owner] = image
            self.memo_pixels += image.width * image.height
        return image


def image_caption_pairs(records: list[Any], tokenizer: Any, transform: Any) -> ImageCaptionPairs:
    captions, owners = [], []
    for i, record in enumerate(records):
        for caption in record.captions:
            captions.append(caption)
            owners.append(i)
    return ImageCaptionPairs([r.image for r in records], tokenizer(captions), owners, transform)
