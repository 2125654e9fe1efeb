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
    (tmp_path / "dev.csv").write_text("review,stars\nfine,1\n")
    cfg = AdapterConfig(data=str(tmp_path), text_col="review", label_col="stars")
    data = tdata.load_text_data(cfg)
    assert data.label_names == ["0", "1", "2"] and data.train.labels == [2, 0, 1] and data.val.texts == ["fine"]
    assert data.test is None and data.val_split == str(tmp_path / "dev.csv")
    (tmp_path / "dev.csv").write_text("review,stars\nfine,7\n")
    with pytest.raises(DataError, match="label '7' is not among the training labels"):
        tdata.load_text_data(cfg)


def test_builtin_sentiment_follows_its_rule():
    from dlkit.builtin.sentiment import NEGATIVE, POSITIVE

    data = tdata.load_text_data(AdapterConfig())
    assert data.label_names == ["negative", "positive"] and len(data.train) == 1200
    assert len(data.val) == len(data.test) == 300 and data.val_split.endswith("validation.jsonl")
    train = set(data.train.texts)
    assert not train & set(data.val.texts) and not train & set(data.test.texts)  # held-out means unseen
    for text, label in zip(data.val.texts, data.val.labels, strict=True):
        words = set(text.split())
        assert bool(words & set(POSITIVE)) == (label == 1) and bool(words & set(NEGATIVE)) == (label == 0)


def test_hub_imdb_labels_come_from_its_class_label(monkeypatch):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"text": ["bad", "good", "fine", "poor"], "label": [0, 1, 1, 0]}, features=features
            ),
            "test": datasets.Dataset.from_dict({"text": ["awful"], "label": [0]}, features=features),
            "unsupervised": datasets.Dataset.from_dict({"text": ["?"], "label": [-1]}, features=features),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda repo_id: splits)
    monkeypatch.setattr(tdata, "resolve", lambda spec, kind, flag: type("S", (), {"kind": "hub", "value": spec})())
    data = tdata.load_text_data(AdapterConfig(data="imdb", val_fraction=0.5))
    assert data.label_names == ["neg", "pos"] and sorted(data.train.labels + data.val.labels) == [0, 0, 1, 1]
    assert data.test_split == "imdb:test" and data.test.texts == ["awful"]
    assert data.val_split == "held-out 50% of imdb:train"


def test_validation_picks_checkpoints_and_test_is_kept_for_eval(tmp_path):
    """train/validation/test files: validation is the data's own, test stays apart; none of them is cut again."""
    for split, texts in (
        ("train", ["good", "bad", "fine", "poor"]),
        ("validation", ["nice", "awful"]),
        ("test", ["great", "dull", "ok"]),
    ):
        rows = [{"text": text, "label": "pos" if i % 2 == 0 else "neg"} for i, text in enumerate(texts)]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = tdata.load_text_data(AdapterConfig(data=str(tmp_path)))
    assert (data.train.texts, data.val.texts, data.test.texts) == (
        ["good", "bad", "fine", "poor"],
        ["nice", "awful"],
        ["great", "dull", "ok"],
    )
    rule = data.rule(AdapterConfig(data=str(tmp_path)))
    assert "validation from the data's" in rule and "test from the data's" in rule
    assert set(data.ids()) == {"train", "validation", "test"}


def test_unlabelled_test_split_is_left_out_with_a_warning(tmp_path, capsys, monkeypatch):
    """GLUE-style: test.tsv without a label column, and a Hub test split of -1 labels."""
    import datasets

    (tmp_path / "train.jsonl").write_text(
        "".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n" for i in range(10))
    )
    (tmp_path / "test.csv").write_text("text\nunlabelled\n")
    data = tdata.load_text_data(AdapterConfig(data=str(tmp_path)))
    assert data.test is None and len(data.val) == 2 and "has no labels" in capsys.readouterr().err
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
    )
    splits = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": labels}, features=features)
            for split, labels in (("train", [0, 1]), ("validation", [1, 0]), ("test", [-1, -1]))
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda repo_id: splits)
    monkeypatch.setattr(tdata, "resolve", lambda spec, kind, flag: type("S", (), {"kind": "hub", "value": spec})())
    data = tdata.load_text_data(AdapterConfig(data="glue-sst2", text_col="sentence"))
    assert data.test is None and data.val.labels == [1, 0] and "glue-sst2:test has no labels" in capsys.readouterr().err


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
    data = tdata.load_text_data(AdapterConfig(data=str(tmp_path), val_fraction=0.5))
    assert data.label_names == ["neg", "pos"] and len(data.train) == 2 and len(data.val) == 2 and len(data.test) == 4
    assert data.test_split == str(tmp_path / "test")
    assert dict(zip(data.test.texts, data.test.labels, strict=True)) == {
        "Dull.": 0,
        "Awful plot.": 0,
        "A wonderful film. Loved it.": 1,
        "Great acting.": 1,
    }
    result = cli(
        "adapter",
        "train",
        "--data",
        tmp_path,
        "--val-fraction",
        "0.5",
        "--max-steps",
        "1",
        "--output-dir",
        tmp_path / "run",
    )
    assert result.exit_code == 0, result.stderr


def test_a_training_text_in_another_file_has_the_same_id(tmp_path):
    """Content ids: a test row that repeats a training text, at another position, is recognised."""
    for split, texts in (("train", ["good", "bad", "fine", "poor"]), ("test", ["awful", "fine", "nice"])):
        rows = [{"text": text, "label": "pos" if text in ("good", "fine", "nice") else "neg"} for text in texts]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = tdata.load_text_data(AdapterConfig(data=str(tmp_path), val_fraction=0.5))
    ids = data.ids()
    assert ids["test"][1] in ids["train"] + ids["validation"] and ids["test"][0] not in ids["train"] + ids["validation"]
