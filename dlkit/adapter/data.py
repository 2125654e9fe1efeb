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

from dlkit.builtin import BUILTINS
from dlkit.classify.classifier import (
    TEST_NAME,
    VALIDATION_NAMES,
    ClassifierData,
    check_classes,
    cut_splits,
    leave_out_test,
    named_splits,
)
from dlkit.core.errors import DataError
from dlkit.core.sources import resolve
from dlkit.core.splits import example_id

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
SPLIT_NAMES = ("train", *VALIDATION_NAMES, TEST_NAME)  # files, folders or Hub splits dlkit reads


@dataclass
class TextSplit:
    texts: list[str]
    labels: list[int]
    ids: list[str] = field(default_factory=list)  # content ids of the texts, for the split record

    def __len__(self) -> int:
        return len(self.texts)

    def example_ids(self) -> list[str]:
        return self.ids

    def select(self, indices: list[int]) -> TextSplit:
        return TextSplit(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.ids[i] for i in indices] if self.ids else [],
        )

    def with_ids(self) -> TextSplit:
        """Content ids: a text that is in train and in another split, or another file, has one id there, so every
        eval leaves it out."""
        return TextSplit(self.texts, self.labels, [example_id(text) for text in self.texts])


@dataclass
class TextData(ClassifierData):
    skipped: int = 0  # rows without text or label


def load_text_data(cfg: Any) -> TextData:
    """Train, validation and (when the data has a labelled one) test texts for `cfg.data`; without a validation
    split a seeded share of each class of train is held out for validation."""
    source = resolve(cfg.data, "data", flag="--data")
    class_names: dict[str, list[str]] = {}
    if source.kind == "hub":
        raw, class_names = hub_splits(source.value)
    else:
        path = Path(BUILTINS[source.value].load()) if source.kind == "builtin" else source.path
        raw = local_splits(path, cfg.text_col, cfg.label_col)
    columns = Columns(cfg.text_col, cfg.label_col)
    train_rows, where = raw["train"]
    columns.check(train_rows, where)
    names = class_names.get(cfg.label_col) or columns.label_names(train_rows, where)
    check_classes(names, f"--label-col {cfg.label_col} in {where}")
    train, skipped = columns.split(train_rows, names, where)
    read = TextData(train.with_ids(), None, names, "", skipped=skipped)
    val_name, test_name = named_splits(raw)
    if val_name is not None:
        val_rows, read.val_split = raw[val_name]
        columns.check(val_rows, read.val_split)
        read.val, val_skipped = columns.split(val_rows, names, read.val_split)
        if not len(read.val):
            raise DataError(f"--data {read.val_split}: no usable validation row ({val_skipped} without text or label)")
        read.val, read.skipped = read.val.with_ids(), read.skipped + val_skipped
    if test_name is not None:
        test_rows, test_where = raw[test_name]
        if test_rows and cfg.label_col in test_rows[0]:
            columns.check(test_rows, test_where)
            test, test_skipped = columns.split(test_rows, names, test_where)
            if len(test):
                read.test, read.test_split = test.with_ids(), test_where
                read.skipped += test_skipped
        if read.test is None:
            leave_out_test(f"--data {test_where} has no labels")
    return cut_splits(cfg, read, where, where)


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
                raise DataError(
                    f"--data {where}: no column {col!r} (columns: {', '.join(map(str, found))}); pass {flag}"
                )
        if not any(_text(row.get(self.text_col)) for row in rows):
            raise DataError(f"--text-col {self.text_col} in {where} is empty: no row has text")

    def label_names(self, rows: list[dict[str, Any]], where: str) -> list[str]:
        """Integer labels 0..max keep their numbers as names; other labels are sorted."""
        values = {label for row in rows if (label := _label(row.get(self.label_col))) is not None}
        ids = any(v.isdigit() for v in values)  # integer class ids: then 1.5 or -1 would become extra classes
        for number, row in enumerate(rows, start=1):
            value = _label(row.get(self.label_col))
            if value is not None and (value.lower() == "nan" or ids and not value.isdigit() and _is_number(value)):
                raise DataError(
                    f"--label-col {self.label_col} in {where}: row {number} has label {value!r}; "
                    "expected a class id 0, 1, 2, ... or a class name (leave it empty to skip the row)"
                )
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
                raise DataError(
                    f"--label-col {self.label_col} in {where}: label {label!r} is not among the "
                    f"training labels ({', '.join(names)})"
                )
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


def local_splits(
    path: Path,
    text_col: str = "text",
    label_col: str = "label",
) -> dict[str, tuple[list[dict[str, Any]], str]]:
    """{"train": (rows, file)} from one file, or train/test/validation files from a folder, or folders of
    .txt files per class (the aclImdb layout: train/pos, train/neg, test/pos, test/neg)."""
    if path.is_file():
        return {"train": (read_rows(path), str(path))}
    found = {}
    for split in SPLIT_NAMES:
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
        raise DataError(
            f"--data {path}: no train file; expected {path}/train.jsonl or train.csv "
            "(and optionally test.jsonl / test.csv)"
        )
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
    for split in SPLIT_NAMES:
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
