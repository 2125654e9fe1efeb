"""The shared split record: written once at train time, checked by every eval."""

from __future__ import annotations

import json

import pytest

from dlkit.core.config import TrainConfig
from dlkit.core.errors import ConfigError, RunError
from dlkit.core.run import Run
from dlkit.core.splits import DataSplits, eval_split, held_out, record_splits, scored, split_fields


@pytest.fixture
def run(tmp_path):
    run = Run.create("demo", TrainConfig(output_dir=str(tmp_path / "run")), "demo")
    record_splits(run, DataSplits({"train": ["a", "b"], "validation": ["c"], "test": ["d", "e"]}, "by hand"))
    run.write_config(TrainConfig())
    return run


def test_the_record_lands_in_splits_json_and_config_json(run):
    assert json.loads((run.dir / "splits.json").read_text()) == {
        "rule": "by hand",
        "train": ["a", "b"],
        "validation": ["c"],
        "test": ["d", "e"],
    }
    summary = json.loads(run.config_path.read_text())["_dlkit"]["splits"]
    assert summary["sizes"] == {"train": 2, "validation": 1, "test": 2} and summary["rule"] == "by hand"
    assert len(summary["fingerprint"]) == 16


def test_held_out_by_default_train_only_by_name():
    assert eval_split(None, ["train", "validation", "test"]) == "test"
    assert eval_split(None, ["train", "validation"]) == "validation"
    assert eval_split("val", ["train", "validation"]) == "validation"
    assert eval_split("train", ["train", "validation"]) == "train"
    with pytest.raises(ConfigError, match="--split train"):
        eval_split(None, ["train"])
    with pytest.raises(ConfigError, match="no test split"):
        eval_split("test", ["train", "validation"])


def test_trained_examples_are_left_out_of_a_held_out_eval(run, capsys):
    assert held_out(run, "test", ["d", "a", "e"]) == [0, 2]
    assert "1 of the 3 test examples were trained on" in capsys.readouterr().err
    assert held_out(run, "train", ["a", "b"]) == [0, 1]
    with pytest.raises(ConfigError, match="every test example was trained on"):
        held_out(run, "test", ["a", "b"])
    assert split_fields("test", 2, 1) == {"split": "test", "split_size": 2, "trained_examples_left_out": 1}


def test_scored_picks_the_held_out_split_and_leaves_the_trained_examples_out(run, capsys):
    part = scored(run, None, {"train": ["a", "b"], "val": ["c"], "test": ["d", "a", "e"]})
    assert (part.name, part.keep, part.size, part.left_out) == ("test", [0, 2], 3, 1)
    assert part.fields() == {"split": "test", "split_size": 2, "trained_examples_left_out": 1}
    assert scored(run, None, {"train": ["a"], "validation": ["c"], "test": []}).name == "validation"
    assert scored(run, "train", {"train": ["a", "b"], "test": ["d"]}).keep == [0, 1]
    whole = scored(run, "leaky", {"leaky": ["a", "x"]})  # a file scored whole, under its own name
    assert (whole.name, whole.keep) == ("leaky", [1])
    assert scored(None, None, {"test": ["a", "b"]}).keep == [0, 1]  # pretrained weights: nothing was trained on
    with pytest.raises(ConfigError, match="--split train"):
        scored(run, None, {"train": ["a"], "test": []})


def test_every_eval_picks_its_split_through_scored():
    """eval_split and held_out are scored's parts: a group calling them itself has its own split rule."""
    import ast
    from pathlib import Path

    import dlkit

    package = Path(dlkit.__file__).parent
    own_rule = []
    for path in package.rglob("*.py"):
        if path == package / "core" / "splits.py":
            continue
        names = {
            n.id if isinstance(n, ast.Name) else n.attr
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Name | ast.Attribute)
        }
        own_rule += [f"{path.relative_to(package)}: {name}" for name in ("eval_split", "held_out") if name in names]
    assert not own_rule
    callers = {path.parent.name for path in package.rglob("*.py") if "scored(" in path.read_text()}
    assert {"llm", "caption", "clip", "qa", "charrnn", "classify"} <= callers


def test_resume_refuses_data_that_splits_differently(run):
    record_splits(run, DataSplits({"train": ["b", "a"], "validation": ["c"], "test": ["d", "e"]}, "x"), resume=True)
    with pytest.raises(RunError, match="validation changed"):
        record_splits(run, DataSplits({"train": ["a", "b"], "validation": ["z"], "test": ["d", "e"]}, "x"), resume=True)


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("pqa_test.json", "test"),
        ("dev-v2.0.json", "validation"),
        ("train-v2.0.json", "train"),
        ("/data/dogs/test", "test"),
        ("PersianQA_validation.jsonl", "validation"),
        ("breeds", "all"),
        ("builtin:instruct", "all"),
        ("train_and_test.json", "all"),
    ],
)
def test_a_name_gives_its_split_or_all(name, split):
    from dlkit.core.splits import split_in_name

    assert split_in_name(name) == split
