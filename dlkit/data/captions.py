"""Image-caption records, read by caption and clip: the common Flickr8k/COCO layouts, a Hub dataset or
builtin:shapes read into one list of records, the undecodable images dropped, and the split by image.

Layouts recognised in a folder (first match wins):
  prepared  `prepared.json` written by `dlkit caption prepare` (records + split + vocab.json)
  kaggle    `captions.txt` (CSV `image,caption`) + `Images/`
  original  `Flickr8k.token.txt` (`name.jpg#k<TAB>caption`) + `Flicker8k_Dataset/`, optional
            `Flickr_8k.{train,dev,test}Images.txt` split files (also inside `Flickr8k_text/`)
  karpathy  `dataset_flickr8k.json` (or dataset_flickr30k/dataset_coco.json) + an image folder
  coco      `captions_*.json` (also inside `annotations/`) + the images it names
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dlkit.core.errors import DataError
from dlkit.core.run import atomic_write_bytes, atomic_write_json
from dlkit.core.sources import cache_dir, path_inside, resolve
from dlkit.core.splits import DataSplits
from dlkit.data.images import open_image

SPLITS = ("train", "val", "test")


SPLIT_ALIASES = {
    "train": "train",
    "restval": "train",
    "val": "val",
    "dev": "val",
    "validation": "val",
    "valid": "val",
    "test": "test",
}


IMAGE_DIRS = ("Images", "images", "Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k_images", "")


PREPARED_FILE = "prepared.json"


LOOKED_FOR = (
    f"{PREPARED_FILE}, captions.txt + Images/, Flickr8k.token.txt + Flicker8k_Dataset/, "
    "dataset_flickr8k.json, captions_*.json"
)


@dataclass
class CaptionRecord:
    image: str  # absolute path
    captions: list[str]  # raw, as written in the dataset
    split: str | None = None  # train / val / test when the dataset says so


def new_stats(layout: str) -> dict[str, Any]:
    return {"images": 0, "captions": 0, "skipped_missing_images": 0, "skipped_empty_captions": 0, "layout": layout}


def load_caption_records(spec: str, strict: bool = False) -> tuple[list[CaptionRecord], dict[str, Any]]:
    """Read a folder, `builtin:shapes` or a Hub dataset id into records and loading statistics.

    Captions naming a missing image and empty captions are skipped and counted; `strict` makes
    either a DataError naming the file and row.
    """

    source = resolve(spec, "data", flag="--data")
    if source.kind == "builtin":
        from dlkit.builtin import BUILTINS

        folder = Path(BUILTINS[source.value].load())
        if not (folder / "captions.txt").is_file():
            raise DataError(f"--data {spec} is not an image-caption dataset; use builtin:shapes")
        return _kaggle(folder, folder / "captions.txt", strict)
    if source.kind == "hub":
        return _hub(source.value, strict)
    return _local(source.path, strict)


def _local(path: Path, strict: bool) -> tuple[list[CaptionRecord], dict[str, Any]]:
    if path.is_file():
        folder, files = path.parent, [path]
    else:
        folder = path
        files = [
            folder / name
            for name in (
                PREPARED_FILE,
                "captions.txt",
                "Flickr8k.token.txt",
                "Flickr8k_text/Flickr8k.token.txt",
                "dataset_flickr8k.json",
                "dataset_flickr30k.json",
                "dataset_coco.json",
            )
        ]
        files += sorted(folder.glob("captions_*.json")) + sorted(folder.glob("annotations/captions_*.json"))
    for file in files:
        if not file.is_file():
            continue
        name = file.name
        if name == PREPARED_FILE:
            return _prepared(file)
        if name.endswith(".token.txt") or (name.endswith(".txt") and _looks_like_token_file(file)):
            return _original(folder, file, strict)
        if name.endswith((".txt", ".csv")):
            return _kaggle(folder, file, strict)
        if name.endswith(".json"):
            data = read_json_file(file)
            if isinstance(data, dict) and "annotations" in data:
                return _coco([file], data, strict)
            if isinstance(data, dict) and isinstance(data.get("images"), list):
                return _karpathy(folder, file, data, strict)
            raise DataError(f"{file}: neither Karpathy ('images' with 'sentences') nor COCO ('annotations') JSON")
    raise DataError(f"{path}: no image-caption layout recognised; looked for {LOOKED_FOR}")


def _looks_like_token_file(file: Path) -> bool:
    with open(file, encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    return "\t" in first and "#" in first.split("\t", 1)[0]


def read_json_file(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: not valid JSON ({exc})") from None


class _Collector:
    """Groups (image, caption) rows into records, skipping and counting what is missing or empty."""

    def __init__(self, layout: str, strict: bool):
        self.stats = new_stats(layout)
        self.strict = strict
        self.records: dict[str, CaptionRecord] = {}
        self.missing: set[str] = set()
        self.exists: dict[str, bool] = {}

    def add(self, image: Path, caption: str | None, where: str, split: str | None = None) -> None:
        key = str(image)
        if key not in self.exists:
            self.exists[key] = image.is_file()
        if not self.exists[key]:
            if self.strict:
                raise DataError(f"{where}: image {image} does not exist")
            self.missing.add(key)
            return
        if caption is None or not caption.strip():
            if self.strict:
                raise DataError(f"{where}: empty caption for {image.name}")
            self.stats["skipped_empty_captions"] += 1
            return
        record = self.records.setdefault(key, CaptionRecord(key, [], split))
        record.captions.append(caption.strip())
        if split is not None:
            record.split = split

    def result(self, source: Path | str) -> tuple[list[CaptionRecord], dict[str, Any]]:
        records = list(self.records.values())
        self.stats["skipped_missing_images"] = len(self.missing)
        self.stats["images"] = len(records)
        self.stats["captions"] = sum(len(r.captions) for r in records)
        if not records:
            reasons = []
            if self.missing:
                reasons.append(f"{len(self.missing)} images named there do not exist")
            if self.stats["skipped_empty_captions"]:
                reasons.append(f"{self.stats['skipped_empty_captions']} captions are empty")
            why = "; ".join(reasons) or "it lists no captions"
            raise DataError(f"{source}: no usable image-caption pairs ({why})")
        return records, self.stats


def _kaggle(folder: Path, file: Path, strict: bool) -> tuple[list[CaptionRecord], dict[str, Any]]:
    images = _image_dir(folder, ("Images", "images", ""))
    out = _Collector("kaggle", strict)
    with open(file, encoding="utf-8", newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or (lineno == 1 and [c.strip().lower() for c in row[:2]] == ["image", "caption"]):
                continue
            name = row[0].strip()
            caption = ",".join(row[1:]) if len(row) > 1 else None  # unquoted commas inside a caption
            out.add(path_inside(folder, name, f"{file}:{lineno}", images), caption, f"{file}:{lineno}")
    return out.result(file)


def _original(folder: Path, file: Path, strict: bool) -> tuple[list[CaptionRecord], dict[str, Any]]:
    images = _image_dir(folder, ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images", "images", ""))
    splits: dict[str, str] = {}
    for split, stem in (("train", "train"), ("val", "dev"), ("test", "test")):
        for candidate in (file.parent / f"Flickr_8k.{stem}Images.txt", folder / f"Flickr_8k.{stem}Images.txt"):
            if candidate.is_file():
                for line in candidate.read_text(encoding="utf-8").split():
                    splits[line.strip()] = split
                break
    out = _Collector("original", strict)
    with open(file, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            key, _, caption = line.rstrip("\n").partition("\t")
            name = key.split("#", 1)[0].strip()
            out.add(
                path_inside(folder, name, f"{file}:{lineno}", images), caption, f"{file}:{lineno}", splits.get(name)
            )
    return out.result(file)


def _karpathy(folder: Path, file: Path, data: dict, strict: bool) -> tuple[list[CaptionRecord], dict[str, Any]]:
    images = _image_dir(folder, IMAGE_DIRS)
    out = _Collector("karpathy", strict)
    for index, item in enumerate(data["images"]):
        name = item.get("filename")
        if not name:
            raise DataError(f"{file}: images[{index}] has no 'filename'")
        path = path_inside(folder, os.path.join(item.get("filepath", ""), name), f"{file}: images[{index}]", images)
        split = SPLIT_ALIASES.get(str(item.get("split", "")).lower())
        sentences = item.get("sentences") or [None]
        for sentence in sentences:
            raw = sentence.get("raw") if isinstance(sentence, dict) else sentence
            out.add(path, raw, f"{file}: images[{index}] ({name})", split)
    return out.result(file)


def _coco(files: list[Path], data: dict, strict: bool) -> tuple[list[CaptionRecord], dict[str, Any]]:
    file = files[0]
    folder = file.parent.parent if file.parent.name == "annotations" else file.parent
    split_name = file.stem.removeprefix("captions_").rstrip("0123456789")  # captions_val2014 -> val
    split = SPLIT_ALIASES.get(split_name)
    subdir = file.stem.removeprefix("captions_")
    candidates = [folder / subdir, folder / "images" / subdir, folder / "images", folder]
    paths = {}
    for image in data.get("images", []):
        name = image.get("file_name", "")
        path_inside(folder, name, f"{file}: image id {image.get('id')}")  # also covers the deeper candidates
        paths[image.get("id")] = next((c / name for c in candidates if (c / name).is_file()), candidates[0] / name)
    out = _Collector("coco", strict)
    for index, ann in enumerate(data["annotations"]):
        path = paths.get(ann.get("image_id"))
        if path is None:
            if strict:
                raise DataError(f"{file}: annotations[{index}] names image_id {ann.get('image_id')} not in 'images'")
            out.missing.add(f"id:{ann.get('image_id')}")
            continue
        out.add(path, ann.get("caption"), f"{file}: annotations[{index}]", split)
    return out.result(file)


def _image_dir(folder: Path, names: Sequence[str]) -> Path:
    for name in names:
        if name and (folder / name).is_dir():
            return folder / name
    return folder


def _prepared(file: Path) -> tuple[list[CaptionRecord], dict[str, Any]]:
    data = read_json_file(file)
    try:
        records = [CaptionRecord(r["image"], list(r["captions"]), r.get("split")) for r in data["records"]]
    except (KeyError, TypeError) as exc:
        raise DataError(f"{file}: not a prepared caption set (missing {exc})") from None
    stats = {**new_stats("prepared"), **data.get("stats", {}), "layout": "prepared"}
    stats["images"], stats["captions"] = len(records), sum(len(r.captions) for r in records)
    return records, stats


def write_prepared(folder: Path, records: Sequence[CaptionRecord], stats: dict[str, Any]) -> Path:
    """Save records (with their split) so `--data FOLDER` reads them back as the 'prepared' layout."""
    path = Path(folder) / PREPARED_FILE
    atomic_write_json(path, {"stats": stats, "records": [asdict(r) for r in records]})
    return path


def _hub(repo_id: str, strict: bool) -> tuple[list[CaptionRecord], dict[str, Any]]:
    from datasets import load_dataset

    dataset = load_dataset(repo_id)
    slug = re.sub(r"[^\w.-]+", "--", repo_id)
    return records_from_hf(dataset, cache_dir() / "caption-hub" / slug, strict)


def records_from_hf(dataset: Any, image_root: Path, strict: bool = False) -> tuple[list[CaptionRecord], dict]:
    """A `datasets` DatasetDict (an Image column + caption columns) to records; images saved under image_root."""
    from datasets import DatasetDict, Image, Sequence, Value

    splits = dataset if isinstance(dataset, DatasetDict) else {"train": dataset}
    out = _Collector("hub", strict)
    for split_name, part in splits.items():
        features = part.features
        image_col = next((k for k, f in features.items() if isinstance(f, Image)), None)
        text_cols = [
            k
            for k, f in features.items()
            if (
                isinstance(f, Value)
                and f.dtype in ("string", "large_string")
                or isinstance(f, (Sequence, list))
                and _is_text_list(f)
            )
            and re.search(r"caption|sentence|text|raw", k, re.I)
        ]
        if image_col is None or not text_cols:
            raise DataError(
                f"Hub dataset split {split_name!r} needs an Image column and caption columns "
                f"(found {', '.join(features)})"
            )
        folder = image_root / split_name
        folder.mkdir(parents=True, exist_ok=True)
        split = SPLIT_ALIASES.get(split_name.lower(), split_name)
        for index, row in enumerate(part.cast_column(image_col, Image(decode=False))):
            path = folder / f"{index:06d}{_suffix(row[image_col])}"
            if not path.exists():
                atomic_write_bytes(path, _image_bytes(row[image_col]))
            captions = []
            for col in text_cols:
                value = row[col]
                captions.extend(value if isinstance(value, list) else [value])
            for caption in captions:
                out.add(path, caption, f"{split_name}[{index}]", split)
    return out.result(str(image_root))


def _is_text_list(feature: Any) -> bool:
    inner = getattr(feature, "feature", feature[0] if isinstance(feature, list) and feature else None)
    return getattr(inner, "dtype", None) in ("string", "large_string")


def _suffix(image: dict) -> str:
    suffix = Path(image.get("path") or "").suffix.lower()
    return suffix if suffix in (".jpg", ".jpeg", ".png", ".webp", ".bmp") else ".png"


def _image_bytes(image: dict) -> bytes:
    if image.get("bytes"):
        return image["bytes"]
    return Path(image["path"]).read_bytes()


def readable_records(records: Sequence[CaptionRecord], strict: bool = False) -> tuple[list[CaptionRecord], int]:
    """Drop records whose image does not decode (counted); with `strict` the first one is a DataError."""
    kept, skipped = [], 0
    for record in records:
        try:
            open_image(record.image)
        except DataError:
            if strict:
                raise
            skipped += 1
            continue
        kept.append(record)
    return kept, skipped


def split_records(
    records: Sequence[CaptionRecord],
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    keep_given: bool = True,
) -> dict[str, list[CaptionRecord]]:
    """Train/val/test BY IMAGE. A dataset that names all three splits keeps them (`keep_given`);
    otherwise the images are shuffled with `seed` and cut 80/10/10. Records get their split set."""
    if keep_given and splits_given(records):
        out: dict[str, list[CaptionRecord]] = {s: [] for s in SPLITS}
        for record in records:
            if record.split is not None:  # every one (splits_given)
                out[record.split].append(record)
        return out
    images = sorted({r.image for r in records})
    random.Random(seed).shuffle(images)
    n = len(images)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    if n >= 3:  # every split gets at least one image
        n_val = max(n_val, 1)
        n_train = min(max(n_train, 1), n - n_val - 1)
    assignment = {img: "train" for img in images[:n_train]}
    assignment.update({img: "val" for img in images[n_train : n_train + n_val]})
    assignment.update({img: "test" for img in images[n_train + n_val :]})
    out = {s: [] for s in SPLITS}
    for record in records:
        record.split = assignment[record.image]
        out[record.split].append(record)
    return out


def splits_given(records: Sequence[CaptionRecord]) -> bool:
    """Whether the dataset names all three splits itself (Flickr8k's split files, Karpathy's JSON)."""
    return {r.split for r in records} == set(SPLITS)


def data_splits(splits: dict[str, list[CaptionRecord]], given: bool, seed: int) -> DataSplits:
    """The run's record of which images went where (ids: image paths)."""
    rule = "train/val/test as given by the data" if given else f"seeded: images cut 80/10/10 (seed {seed})"
    names = {"train": "train", "val": "validation", "test": "test"}
    return DataSplits({names[s]: [r.image for r in records] for s, records in splits.items()}, rule)
