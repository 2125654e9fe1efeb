"""Classification metrics equal scikit-learn's; the CSV and PNG writers produce readable files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dlkit.classify.classifier import write_report_csv
from dlkit.core.plots import plot_confusion_matrix
from dlkit.metrics import (
    classification_report,
    topk_accuracy,
    worst_classes,
)


def _random_fixture(seed: int, num_classes: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, num_classes, size=n)
    # Mostly right, sometimes a random class; class num_classes-1 is never predicted and
    # class 0 is never a true label, so both zero-division paths are exercised.
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, num_classes - 1, size=n))
    y_pred = np.where(y_pred == num_classes - 1, 1, y_pred)
    y_true = np.where(y_true == 0, 2, y_true)
    return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_report_equals_sklearn(seed: int) -> None:
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    k = 7
    y_true, y_pred = _random_fixture(seed, k, 300)
    assert k - 1 not in set(y_pred.tolist()) and 0 not in set(y_true.tolist())
    labels = [f"class_{i}" for i in range(k)]
    report = classification_report(y_true.tolist(), y_pred.tolist(), labels=labels)

    assert report["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert report["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=list(range(k))).tolist()
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(k)), zero_division=0)
    assert [row["class"] for row in report["per_class"]] == labels
    assert [row["precision"] for row in report["per_class"]] == pytest.approx(p.tolist(), abs=1e-12)
    assert [row["recall"] for row in report["per_class"]] == pytest.approx(r.tolist(), abs=1e-12)
    assert [row["f1"] for row in report["per_class"]] == pytest.approx(f.tolist(), abs=1e-12)
    assert [row["support"] for row in report["per_class"]] == s.tolist()
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=list(range(k)), average=average, zero_division=0
        )
        assert report[average]["precision"] == pytest.approx(p, abs=1e-12)
        assert report[average]["recall"] == pytest.approx(r, abs=1e-12)
        assert report[average]["f1"] == pytest.approx(f, abs=1e-12)
    assert report["per_class"][k - 1]["precision"] == 0.0
    assert report["per_class"][0]["recall"] == 0.0 and report["per_class"][0]["support"] == 0


def test_report_accepts_tensors_and_infers_class_count() -> None:
    import torch

    report = classification_report(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 2, 2, 2]))
    assert report["num_classes"] == 3
    assert report["accuracy"] == pytest.approx(0.75)
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]
    assert [row["class"] for row in report["per_class"]] == ["0", "1", "2"]
    assert classification_report([0, 1], [0, 1], num_classes=4)["macro"]["f1"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        classification_report([0, 5], [0, 1], num_classes=3)


def test_topk_accuracy_hand_case() -> None:
    scores = [
        [0.1, 0.5, 0.3, 0.1],  # ranking 1, 2, 0/3
        [0.7, 0.1, 0.15, 0.05],  # ranking 0, 2, 1, 3
        [0.2, 0.2, 0.5, 0.1],  # ranking 2, then 0 and 1 tied (lower index first)
    ]
    y_true = [2, 3, 1]
    assert topk_accuracy(scores, y_true, 1) == pytest.approx(0.0)
    assert topk_accuracy(scores, y_true, 2) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, y_true, 3) == pytest.approx(2 / 3)
    assert topk_accuracy(scores, y_true, 4) == pytest.approx(1.0)
    assert topk_accuracy(np.asarray(scores), [1, 0, 2], 1) == pytest.approx(1.0)


def test_worst_classes_skips_absent_classes() -> None:
    y_true = [1, 1, 1, 2, 2, 3, 3, 3, 3]
    y_pred = [1, 1, 2, 2, 3, 3, 3, 3, 1]
    report = classification_report(y_true, y_pred, labels=["absent", "one", "two", "three"])
    worst = worst_classes(report, n=2)
    assert [row["class"] for row in worst] == ["two", "one"]
    assert worst[0]["f1"] <= worst[1]["f1"]
    assert [row["class"] for row in worst_classes(report, n=5, key="recall")] == ["two", "one", "three"]
    with pytest.raises(ValueError):
        worst_classes(report, key="support")


def test_write_report_csv(tmp_path: Path) -> None:
    report = classification_report([0, 1, 1, 2], [0, 1, 2, 2], labels=["cat", "dog", "bird"])
    out = write_report_csv(report, tmp_path / "sub" / "report.csv")
    assert out == tmp_path / "sub" / "report.csv"
    assert not (tmp_path / "sub" / "report.tmp").exists()
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["class", "precision", "recall", "f1", "support"]
    assert [r[0] for r in rows[1:]] == ["cat", "dog", "bird", "macro avg", "weighted avg", "accuracy"]
    assert float(rows[2][2]) == pytest.approx(0.5) and rows[2][4] == "2"
    assert float(rows[-1][3]) == pytest.approx(0.75)


@pytest.mark.parametrize("num_classes", [4, 160])
def test_plot_confusion_matrix_writes_png(tmp_path: Path, num_classes: int) -> None:
    import matplotlib.image

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, num_classes, size=400)
    y_pred = np.where(rng.random(400) < 0.7, y_true, rng.integers(0, num_classes, size=400))
    labels = [f"label {i}" for i in range(num_classes)]
    report = classification_report(y_true, y_pred, labels=labels)
    path = plot_confusion_matrix(report["confusion_matrix"], labels, tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "cm.tmp").exists()
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] >= 400 and pixels.shape[1] >= 400
    assert pixels.std() > 0.01  # not a blank canvas
