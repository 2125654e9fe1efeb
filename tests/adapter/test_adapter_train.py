"""Each method learns builtin:sentiment; training changes only what the method trains; eval and predict."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from dlkit.adapter.config import AdapterConfig
from dlkit.adapter.methods import METHODS
from dlkit.adapter.models import load, load_classifier, model_folder
from dlkit.adapter.task import train

LABELS = ["negative", "positive"]
# (lr, min val accuracy; chance = 0.5). No validation sentence is a training sentence, so accuracy is the rule
# learned. The frozen random encoder leaves the head alone nothing to learn it from (it stays at chance, ~0.49),
# which is the point of adapters: with them the same frozen model learns the rule (~0.89).
SETTINGS = {"adapter": (1e-2, 0.8), "head": (1e-2, None), "full": (3e-3, 0.95)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, train_each_method):
    return train_each_method(
        tmp_path_factory.mktemp("adapter"),
        AdapterConfig,
        train,
        SETTINGS,
        epochs=6,
        max_train_samples=600,
        max_eval_samples=200,
    )


def test_every_method_has_its_settings():
    assert list(SETTINGS) == list(METHODS)


@pytest.mark.parametrize("method", [m for m, (_, threshold) in SETTINGS.items() if threshold is not None])
def test_method_learns_sentiment(runs, method):
    _, metrics = runs[method]
    assert metrics["val_accuracy"] >= SETTINGS[method][1], metrics
    assert metrics["method"] == method and {"val_f1", "val_precision", "val_recall", "val_macro_f1"} <= set(metrics)


def test_adapter_beats_head_alone_on_the_same_frozen_model(runs):
    # the head alone reaches about 0.65 on the frozen encoder (held in eval mode, so without dropout noise)
    assert runs["adapter"][1]["val_accuracy"] > runs["head"][1]["val_accuracy"] + 0.1
    pct = {m: metrics["trainable_pct"] for m, (_, metrics) in runs.items()}
    assert pct["head"] < pct["adapter"] < 20 < pct["full"] == 100.0


def test_training_changes_only_adapters_norms_and_head(runs):
    base = load_classifier(model_folder("builtin:tiny-roberta"), LABELS).state_dict()
    trained = load(runs["adapter"][0] / "checkpoints" / "final").state_dict()
    adapter_keys = {k for k in trained if ".adapter." in k}
    assert adapter_keys and all(
        not torch.equal(trained[k], torch.zeros_like(trained[k])) for k in adapter_keys if ".up.weight" in k
    )
    changed = set()
    for key, value in trained.items():
        if key in adapter_keys:
            continue
        base_key = key.replace(".dense.linear.", ".dense.")
        if not torch.equal(value, base[base_key]):
            changed.add(key)
    assert changed and all("LayerNorm" in k or k.startswith("classifier.") for k in changed), changed
    assert any(k.startswith("classifier.") for k in changed)


def test_head_run_changes_only_the_head(runs):
    base = load_classifier(model_folder("builtin:tiny-roberta"), LABELS).state_dict()
    trained = load(runs["head"][0] / "checkpoints" / "final").state_dict()
    changed = {k for k, v in trained.items() if not torch.equal(v, base[k])}
    assert changed == {
        "classifier.dense.weight",
        "classifier.dense.bias",
        "classifier.out_proj.weight",
        "classifier.out_proj.bias",
    }


@pytest.mark.parametrize("method", ["adapter", "head"])
def test_final_folder_holds_what_trained(runs, method):
    run_dir, metrics = runs[method]
    final = run_dir / "checkpoints" / "final"
    assert not (final / "model.safetensors").exists()
    buffers = 16_384  # position and token type ids travel with the trained tensors
    assert (final / "trained.safetensors").stat().st_size < 4 * metrics["trainable_params"] + buffers
    assert json.loads((final / "trained.json").read_text())["source"] == "builtin:tiny-roberta"


def test_eval_reports_binary_and_macro_scores_with_misclassified_texts(cli, runs):
    run_dir = runs["head"][0]  # the weakest run: it has mistakes to show
    result = cli("--json", "adapter", "eval", "--run", run_dir)
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    for key in ("accuracy", "precision", "recall", "f1", "macro_precision", "macro_recall", "macro_f1"):
        assert 0 <= metrics[f"test_{key}"] <= 1
    assert metrics["split"] == "test" and metrics["test_samples"] == 200 and "test_top5" not in metrics
    again = json.loads(cli("--json", "adapter", "eval", "--run", run_dir, "--split", "validation").stdout)
    assert again["test_accuracy"] == pytest.approx(runs["head"][1]["val_accuracy"], abs=1e-6)  # what training saw
    metrics = json.loads(cli("--json", "adapter", "eval", "--run", run_dir).stdout)
    report = json.loads((run_dir / "eval.json").read_text())["report"]
    assert [r["class"] for r in report["per_class"]] == LABELS
    with open(run_dir / "samples" / "misclassified.csv", newline="") as f:
        wrong = list(csv.DictReader(f))
    assert len(wrong) == round((1 - metrics["test_accuracy"]) * 200) > 0
    assert all(row["text"] and row["true"] != row["predicted"] for row in wrong)
    assert (run_dir / "plots" / "confusion_matrix.png").is_file()
    human = cli("adapter", "eval", "--run", run_dir)
    assert human.exit_code == 0 and "most confident mistakes" in human.stdout


def test_predict_sentences(cli, runs):
    result = cli(
        "--json", "adapter", "predict", "--run", runs["full"][0], "the acting was superb", "the ending was dreadful"
    )
    assert result.exit_code == 0, result.stderr
    predictions = json.loads(result.stdout)
    assert [p["label"] for p in predictions] == ["positive", "negative"]
    assert all(len(p["top"]) == 2 for p in predictions)
    table = cli("adapter", "predict", "--run", runs["adapter"][0], "i thought the plot was lovely")
    assert table.exit_code == 0 and "positive" in table.stdout


def test_eval_scores_held_out_texts_and_train_only_when_asked(cli, runs):
    from dlkit.adapter.config import AdapterConfig
    from dlkit.adapter.data import load_text_data
    from dlkit.core.run import Run

    run_dir = runs["head"][0]
    ids = json.loads((run_dir / "splits.json").read_text())
    assert [len(ids[split]) for split in ("train", "validation", "test")] == [600, 200, 200]
    metrics = json.loads(cli("--json", "adapter", "eval", "--run", run_dir).stdout)
    assert metrics["split"] == "test" and metrics["split_size"] == 200
    again = load_text_data(Run.open(run_dir, "adapter").config_as(AdapterConfig)).ids()
    assert again == {split: ids[split] for split in again}  # eval cuts exactly the recorded rows
    train = json.loads(cli("--json", "adapter", "eval", "--run", run_dir, "--split", "train").stdout)
    assert train["split"] == "train" and train["split_size"] == 600 and "train_accuracy" in train
