"""`dlkit vit` end to end on builtin models/data, and a one-line error for each bad input."""

from __future__ import annotations

import json

import pytest
from checks import one_line_error
from PIL import Image

QUICK = ["--max-train-samples", "64", "--max-eval-samples", "40", "--epochs", "1", "--batch-size", "16"]


@pytest.fixture(scope="module")
def deit_run(tmp_path_factory):
    """A last-block DeiT run trained through the CLI, at another image size than the model's (48 vs 32)."""
    from dlkit.cli import main

    out = tmp_path_factory.mktemp("deit") / "run"
    code = main(
        [
            "vit",
            "train",
            "--model",
            "builtin:tiny-deit",
            "--method",
            "last-block",
            "--image-size",
            "48",
            "--augment",
            "--output-dir",
            str(out),
            *QUICK,
        ]
    )
    assert code == 0
    return out


def test_train_writes_a_run_folder(deit_run):
    metrics = json.loads((deit_run / "metrics.json").read_text())
    assert metrics["group"] == "vit" and metrics["arch"] == "deit" and metrics["image_size"] == 48
    assert 0 < metrics["trainable_pct"] < 100 and metrics["val_samples"] == 40
    assert (deit_run / "plots" / "loss.png").is_file()
    processor = json.loads((deit_run / "checkpoints" / "final" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 48, "width": 48}


def test_eval_writes_report_confusion_matrix_and_mistakes(cli, deit_run):
    result = cli("--json", "vit", "eval", "--run", deit_run)
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert {"test_accuracy", "test_top5", "test_macro_f1", "test_loss"} <= set(metrics)
    assert metrics["test_samples"] == 40
    report = json.loads((deit_run / "eval.json").read_text())
    assert len(report["report"]["per_class"]) == 10 and sum(map(sum, report["report"]["confusion_matrix"])) == 40
    assert (deit_run / "plots" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert (deit_run / "plots" / "mistakes.png").is_file() == (metrics["test_accuracy"] < 1)
    assert (deit_run / "plots" / "accuracy.png").is_file()
    assert (deit_run / "eval" / "per_class.csv").read_text().startswith("class,precision,recall,f1,support")
    lines = (deit_run / "samples" / "misclassified.csv").read_text().splitlines()
    wrong = round((1 - metrics["test_accuracy"]) * 40)
    assert len(lines) == wrong + (1 if wrong else 0)
    assert json.loads((deit_run / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]


def test_predict_converts_grayscale_and_rgba(cli, deit_run, tmp_path):
    gray, rgba = tmp_path / "gray.png", tmp_path / "rgba.png"
    Image.new("L", (20, 30), 200).save(gray)
    Image.new("RGBA", (64, 64), (10, 200, 30, 0)).save(rgba)
    result = cli("vit", "predict", "--run", deit_run, gray, rgba, "--json")
    assert result.exit_code == 0, result.stderr
    predictions = json.loads(result.stdout)
    assert [p["image"] for p in predictions] == [str(gray), str(rgba)]
    for p in predictions:
        probs = [t["probability"] for t in p["top"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        assert {t["label"] for t in p["top"]} <= {str(i) for i in range(10)}
    table = cli("vit", "predict", "--run", deit_run, gray, "--top-k", "2")
    assert table.exit_code == 0 and "probability" in table.stdout


def test_image_folder_without_classes(cli, tmp_path):
    (tmp_path / "data").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "loose.png")
    one_line_error(
        cli("vit", "train", "--data", tmp_path / "data", "--output-dir", tmp_path / "r"),
        "no class folders",
        "CLASS_NAME/IMAGE.png",
    )
    assert not (tmp_path / "r").exists()


def test_image_folder_whose_images_all_fail_to_decode(cli, tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "data" / name / f"{i}.png").write_text("not a png")
    one_line_error(
        cli("vit", "train", "--data", tmp_path / "data", "--output-dir", tmp_path / "run", *QUICK),
        "(training split): none of the first",
        "cannot be decoded",
    )
    assert not (tmp_path / "run").exists()


def test_image_folder_with_one_class(cli, tmp_path):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "cat" / "a.png")
    one_line_error(
        cli("vit", "train", "--data", tmp_path / "data", "--output-dir", tmp_path / "r"),
        "1 class",
        "'cat'",
        "at least 2",
    )


def test_unknown_method(cli, tmp_path):
    one_line_error(
        cli("vit", "train", "--method", "prompt", "--output-dir", tmp_path / "r"), "--method", "prompt", "lora"
    )


def test_unknown_target_module(cli, tmp_path):
    one_line_error(
        cli("vit", "train", "--target-modules", "query,nope", "--output-dir", tmp_path / "r", *QUICK),
        "--target-modules",
        "nope",
        "q_proj",
    )


def test_run_folder_of_another_group(cli, tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"_dlkit": {"group": "adapter"}}))
    one_line_error(cli("vit", "eval", "--run", tmp_path / "other"), "adapter run, not a vit run")
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    one_line_error(cli("vit", "predict", "--run", tmp_path / "other", tmp_path / "x.png"), "not a vit run")


def test_hub_id_offline_fails_fast(cli, tmp_path):
    one_line_error(cli("vit", "train", "--data", "food101", "--output-dir", tmp_path / "r"), "--data food101")


def test_predict_missing_and_undecodable_images(cli, deit_run, tmp_path):
    one_line_error(cli("vit", "predict", "--run", deit_run, tmp_path / "none.png"), "no such file")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    one_line_error(cli("vit", "predict", "--run", deit_run, bad), "cannot be decoded")


def test_eval_scores_held_out_images_and_train_only_when_asked(cli, deit_run):
    import csv

    ids = json.loads((deit_run / "splits.json").read_text())
    assert [len(ids[split]) for split in ("train", "validation", "test")] == [64, 40, 40]
    assert not set(ids["train"]) & set(ids["validation"]) and not (set(ids["train"]) | set(ids["validation"])) & set(
        ids["test"]
    )

    def scored_images() -> set[str]:
        with open(deit_run / "samples" / "predictions.csv", newline="") as f:
            return {row["image"] for row in csv.DictReader(f)}

    metrics = json.loads(cli("--json", "vit", "eval", "--run", deit_run).stdout)
    assert metrics["split"] == "test" and metrics["split_size"] == 40 and scored_images() == set(ids["test"])
    metrics = json.loads(cli("--json", "vit", "eval", "--run", deit_run, "--split", "validation").stdout)
    assert metrics["split"] == "validation" and scored_images() == set(ids["validation"])
    train = json.loads(cli("--json", "vit", "eval", "--run", deit_run, "--split", "train").stdout)
    assert train["split"] == "train" and train["split_size"] == 64
    assert "train_accuracy" in train and "test_accuracy" not in train


def test_held_out_validation_split_that_ends_up_empty(cli, tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "data" / name / "0.png")  # one image per class: none to spare
    one_line_error(
        cli("vit", "train", "--data", tmp_path / "data", "--output-dir", tmp_path / "r"),
        "leaves no validation example",
        "2 examples in 2 classes",
        "--val-fraction",
    )
    assert not (tmp_path / "r").exists()
