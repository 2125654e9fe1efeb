"""Text classification data: CSV/JSONL files (or a folder of train/test files), a Hub dataset (imdb) or
builtin:sentiment, as (text, label) pairs with the class names in index order.

Labels may be integers or names; names are sorted, so "negative"/"positive" become 0/1 and class 1 is the
positive class of the binary metrics. A row without text or label is skipped and counted; a column that is
missing, empty or holds a single class is an error naming the file and the flag.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlkit.core.classification import check_classes, holdout_split
from dlkit.core.errors import DataError
from dlkit.core.sources import resolve

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
VAL_SPLITS = ("test", "validation", "valid", "val")


@dataclass
class TextSplit:
    texts: list[str]
    labels: list[int]
    ids: list[str] = field(default_factory=list)  # example ids (file + position + content), for the split record

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices: list[int]) -> TextSplit:
        return TextSplit([self.texts[i] for i in indices], [self.labels[i] for i in indices],
                         [self.ids[i] for i in indices] if self.ids else [])

    def with_ids(self, where: str) -> TextSplit:
        from dlkit.core.splits import example_id

        return TextSplit(self.texts, self.labels, [example_id(where, i, text) for i, text in enumerate(self.texts)])


@dataclass
class TextData:
    train: TextSplit
    val: TextSplit
    label_names: list[str]
    val_split: str
    skipped: int


def load_text_data(cfg: Any) -> TextData:
    """Train and validation texts for `cfg.data`, with a seeded per-class holdout when there is no test split."""
    from dlkit.builtin import BUILTINS

    source = resolve(cfg.data, "data", flag="--data")
    class_names: dict[str, list[str]] = {}
    if source.kind == "hub":
        raw, class_names = hub_splits(source.value)
    else:
        path = Path(BUILTINS[source.value].load()) if source.kind == "builtin" else source.path
        raw = local_splits(path, cfg.text_col, cfg.label_col)
    train_name = "train"
    val_name = next((s for s in VAL_SPLITS if s in raw), None)
    columns = Columns(cfg.text_col, cfg.label_col)
    train_rows, where = raw[train_name]
    columns.check(train_rows, where)
    names = class_names.get(cfg.label_col) or columns.label_names(train_rows, where)
    check_classes(names, f"--label-col {cfg.label_col} in {where}")
    train, skipped = columns.split(train_rows, names, where)
    train = train.with_ids(where)
    if val_name is None:
        train_idx, val_idx = holdout_split(train.labels, cfg.val_fraction, cfg.seed, where=where)
        train, val = train.select(train_idx), train.select(val_idx)
        val_label = f"{where} (held-out {cfg.val_fraction:.0%})"
    else:
        val_rows, val_where = raw[val_name]
        columns.check(val_rows, val_where)
        val, val_skipped = columns.split(val_rows, names, val_where)
        if not len(val):
            raise DataError(f"--data {val_where}: no usable validation row ({val_skipped} without text or label)")
        val = val.with_ids(val_where)
        skipped += val_skipped
        val_label = val_where
    train, val = cfg.subsets(train, val)
    return TextData(train, val, names, val_label, skipped)


def split_ids(data: TextData) -> dict[str, list[str]]:
    """Example ids of the run's splits: which rows of which file each split holds."""
    return {"train": data.train.ids, "validation": data.val.ids}


@dataclass
class Columns:
    text_col: str
    label_col: str

    def check(self, rows: list[dict[str, Any]], where: str) -> None:
        if not rows:
            raise DataError(f"--data {where}: no rows")
        found = list(rows[0])
        for col, flag in ((self.text_col, "--text-col"), (self.label_col, "--label-col")):
            if col not in found:
                raise DataError(f"--data {where}: no column {col!r} (columns: {', '.join(map(str, found))}); "
                                f"pass {flag}")
        if not any(_text(row.get(self.text_col)) for row in rows):
            raise DataError(f"--text-col {self.text_col} in {where} is empty: no row has text")

    def label_names(self, rows: list[dict[str, Any]], where: str) -> list[str]:
        """Integer labels 0..max keep their numbers as names; other labels are sorted."""
        values = {_label(row.get(self.label_col)) for row in rows} - {None}
        ids = any(v.isdigit() for v in values)  # integer class ids: then 1.5 or -1 would become extra classes
        for number, row in enumerate(rows, start=1):
            value = _label(row.get(self.label_col))
            if value is not None and (value.lower() == "nan" or ids and not value.isdigit() and _is_number(value)):
                raise DataError(f"--label-col {self.label_col} in {where}: row {number} has label {value!r}; "
                                "expected a class id 0, 1, 2, ... or a class name (leave it empty to skip the row)")
        if len(values) > 1 and all(v.isdigit() for v in values):
            return [str(i) for i in range(max(int(v) for v in values) + 1)]
        return sorted(values)

    def split(self, rows: list[dict[str, Any]], names: list[str], where: str) -> tuple[TextSplit, int]:
        index = {name: i for i, name in enumerate(names)}
        texts, labels, skipped = [], [], 0
        for row in rows:
            text, label = _text(row.get(self.text_col)), _label(row.get(self.label_col))
            if not text or label is None:
                skipped += 1
                continue
            if label not in index:
                raise DataError(f"--label-col {self.label_col} in {where}: label {label!r} is not among the "
                                f"training labels ({', '.join(names)})")
            texts.append(text)
            labels.append(index[label])
        return TextSplit(texts, labels), skipped


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _label(value: Any) -> str | None:
    if value is None or isinstance(value, float) and value != value:  # missing or NaN
        return None
    text = str(value).strip()
    return text or None


def local_splits(path: Path, text_col: str = "text", label_col: str = "label",
                 ) -> dict[str, tuple[list[dict[str, Any]], str]]:
    """{"train": (rows, file)} from one file, or train/test/validation files from a folder, or folders of
    .txt files per class (the aclImdb layout: train/pos, train/neg, test/pos, test/neg)."""
    if path.is_file():
        return {"train": (read_rows(path), str(path))}
    found = {}
    for split in ("train", *VAL_SPLITS):
        if (path / split).is_dir():
            rows = text_folder_rows(path / split, text_col, label_col)
            if rows:
                found[split] = (rows, str(path / split))
                continue
        for suffix in SUFFIXES:
            file = path / f"{split}{suffix}"
            if file.is_file():
                found[split] = (read_rows(file), str(file))
                break
    if "train" not in found:
        raise DataError(f"--data {path}: no train file; expected {path}/train.jsonl or train.csv "
                        "(and optionally test.jsonl / test.csv)")
    return found


UNLABELLED = ("unsup", "unlabeled", "unlabelled")  # aclImdb's train/unsup holds reviews without a label


def text_folder_rows(folder: Path, text_col: str, label_col: str) -> list[dict[str, Any]]:
    """One row per .txt file in the class subfolders of `folder`, labelled with the subfolder's name."""
    rows = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower() not in UNLABELLED):
        for file in sorted(class_dir.glob("*.txt")):
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise DataError(f"--data {file}: not UTF-8 text") from None
            rows.append({text_col: text.replace("<br />", " "), label_col: class_dir.name})
    return rows


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV (header line) or JSONL/JSON file, as dicts."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"--data {path}: not UTF-8 text") from None
    if suffix in (".csv", ".tsv"):
        return list(csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ","))
    if suffix == ".json" and text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"--data {path}: line {number} is not valid JSON ({exc.msg})") from None
    if any(not isinstance(row, dict) for row in rows):
        raise DataError(f"--data {path}: expected one JSON object per line")
    return rows


def hub_splits(repo_id: str) -> tuple[dict[str, tuple[list[dict[str, Any]], str]], dict[str, list[str]]]:
    """A Hub text dataset (imdb: train/test with text and a ClassLabel label) through datasets.load_dataset;
    ClassLabel columns come back as names, with each column's names in index order."""
    from datasets import ClassLabel, load_dataset

    splits = load_dataset(repo_id)
    out, class_names = {}, {}
    for split in ("train", *VAL_SPLITS):
        if split not in splits:
            continue
        rows = splits[split].to_list()
        for key, feature in splits[split].features.items():
            if isinstance(feature, ClassLabel) and rows:
                for row in rows:
                    row[key] = feature.names[row[key]] if isinstance(row[key], int) and row[key] >= 0 else None
            if isinstance(feature, ClassLabel):
                class_names[key] = list(feature.names)
        out[split] = (rows, f"{repo_id}:{split}")
    if "train" not in out:
        raise DataError(f"--data {repo_id}: no 'train' split (found: {', '.join(splits)})")
    return out, class_names


class TextSet:
    """A torch-style Dataset of {"text", "labels"}; the task's collate tokenizes whole batches."""

    def __init__(self, split: TextSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"text": self.split.texts[i], "labels": self.split.labels[i]}
