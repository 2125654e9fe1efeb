"""Text data: CSV/JSONL files and folders, label names, skipped rows, Hub datasets with a ClassLabel."""

from __future__ import annotations

import json

import pytest

from dlkit.adapter import data as tdata
from dlkit.adapter.config import AdapterConfig
from dlkit.core.errors import DataError


def test_jsonl_file_with_names_sorted_and_rows_without_text_skipped(tmp_path):
    rows = [{"text": f"film {i}", "label": "pos" if i % 2 else "neg"} for i in range(20)]
    rows += [{"text": "", "label": "pos"}, {"text": "no label", "label": None}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = tdata.load_text_data(AdapterConfig(data=str(tmp_path / "d.jsonl"), val_fraction=0.2))
    assert data.label_names == ["neg", "pos"] and data.skipped == 2
    assert len(data.train) == 16 and sorted(data.val.labels) == [0, 0, 1, 1]


def test_csv_folder_with_integer_labels_and_custom_columns(tmp_path):
    (tmp_path / "train.csv").write_text("review,stars\ngood,2\nbad,0\nok,1\n")
    (tmp_path / "test.csv").write_text("review,stars\nfine,1\n")
    cfg = AdapterConfig(data=str(tmp_path), text_col="review", label_col="stars")
    data = tdata.load_text_data(cfg)
    assert data.label_names == ["0", "1", "2"] and data.train.labels == [2, 0, 1] and data.val.texts == ["fine"]
    (tmp_path / "test.csv").write_text("review,stars\nfine,7\n")
    with pytest.raises(DataError, match="label '7' is not among the training labels"):
        tdata.load_text_data(cfg)


def test_builtin_sentiment_follows_its_rule():
    from dlkit.builtin.sentiment import NEGATIVE, POSITIVE

    data = tdata.load_text_data(AdapterConfig())
    assert data.label_names == ["negative", "positive"] and len(data.train) == 1200 and len(data.val) == 300
    for text, label in zip(data.val.texts, data.val.labels, strict=True):
        words = set(text.split())
        assert bool(words & set(POSITIVE)) == (label == 1) and bool(words & set(NEGATIVE)) == (label == 0)


def test_hub_imdb_labels_come_from_its_class_label(monkeypatch):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    splits = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["bad", "good", "fine"], "label": [0, 1, 1]}, features=features),
        "test": datasets.Dataset.from_dict({"text": ["awful"], "label": [0]}, features=features),
        "unsupervised": datasets.Dataset.from_dict({"text": ["?"], "label": [-1]}, features=features)})
    monkeypatch.setattr(datasets, "load_dataset", lambda repo_id: splits)
    monkeypatch.setattr(tdata, "resolve", lambda spec, kind, flag: type("S", (), {"kind": "hub", "value": spec})())
    data = tdata.load_text_data(AdapterConfig(data="imdb"))
    assert data.label_names == ["neg", "pos"] and data.train.labels == [0, 1, 1] and data.val_split == "imdb:test"


def test_aclimdb_folders_of_txt_files(tmp_path, cli):
    """train/pos, train/neg, test/pos, test/neg of .txt reviews (aclImdb); train/unsup has no label."""
    reviews = {"pos": ["A wonderful film.<br />Loved it.", "Great acting."], "neg": ["Dull.", "Awful plot."]}
    for split in ("train", "test"):
        for label, texts in reviews.items():
            (tmp_path / split / label).mkdir(parents=True)
            for i, text in enumerate(texts):
                (tmp_path / split / label / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(text)
    (tmp_path / "train" / "unsup").mkdir()
    (tmp_path / "train" / "unsup" / "0_0.txt").write_text("no label here")
    (tmp_path / "imdb.vocab").write_text("film\n")
    data = tdata.load_text_data(AdapterConfig(data=str(tmp_path)))
    assert data.label_names == ["neg", "pos"] and len(data.train) == 4 and len(data.val) == 4
    assert data.val_split == str(tmp_path / "test")
    assert dict(zip(data.train.texts, data.train.labels, strict=True)) == {
        "Dull.": 0, "Awful plot.": 0, "A wonderful film. Loved it.": 1, "Great acting.": 1}
    result = cli("adapter", "train", "--data", tmp_path, "--max-steps", "1", "--output-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
