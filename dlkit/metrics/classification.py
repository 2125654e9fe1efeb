"""Classification metrics: a per-class report, top-k accuracy, and CSV / PNG writers for the report.

Labels are integer class indices 0..K-1; class names are only used for display. Any division by
zero (a class never predicted or never present) gives 0.0, matching scikit-learn's zero_division=0.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

_REPORT_KEYS = ("precision", "recall", "f1", "support")


def _to_numpy(values: Any) -> Any:
    import numpy as np

    if hasattr(values, "detach"):  # torch tensor, possibly on an accelerator
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _safe_div(num: Any, den: Any) -> Any:
    import numpy as np

    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def classification_report(y_true: Any, y_pred: Any, labels: list[str] | None = None,
                          num_classes: int | None = None) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages, confusion matrix.

    The class count is num_classes, else len(labels), else the largest index seen + 1, so classes
    absent from a small evaluation set still get a row. Confusion matrix rows are true classes and
    columns predicted classes. The result holds only plain Python types so it can be dumped as JSON.
    """
    import numpy as np

    true = _to_numpy(y_true).astype(np.int64).reshape(-1)
    pred = _to_numpy(y_pred).astype(np.int64).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} items but y_pred has {pred.size}")
    if num_classes is None:
        num_classes = len(labels) if labels is not None else int(max(true.max(initial=-1),
                                                                     pred.max(initial=-1)) + 1)
    if labels is not None and len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for {num_classes} classes")
    if true.size and (min(true.min(), pred.min()) < 0 or max(true.max(), pred.max()) >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes})")
    names = list(labels) if labels is not None else [str(i) for i in range(num_classes)]

    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)  # equals 2PR/(P+R), without the 0/0 case

    per_class = [
        {"class": names[i], "index": i, "precision": float(precision[i]), "recall": float(recall[i]),
         "f1": float(f1[i]), "support": int(support[i])}
        for i in range(num_classes)
    ]
    total = int(support.sum())
    weights = _safe_div(support, total)
    return {
        "accuracy": float(_safe_div(tp.sum(), total)),
        "num_samples": total,
        "num_classes": num_classes,
        "per_class": per_class,
        "macro": {"precision": float(precision.mean()) if num_classes else 0.0,
                  "recall": float(recall.mean()) if num_classes else 0.0,
                  "f1": float(f1.mean()) if num_classes else 0.0, "support": total},
        "weighted": {"precision": float(precision @ weights), "recall": float(recall @ weights),
                     "f1": float(f1 @ weights), "support": total},
        "confusion_matrix": matrix.tolist(),
    }


def topk_accuracy(logits_or_scores: Any, y_true: Any, k: int) -> float:
    """Fraction of rows whose true class is among the k highest scores (ties go to the lower index)."""
    import numpy as np

    scores = _to_numpy(logits_or_scores).astype(np.float64)
    true = _to_numpy(y_true).astype(np.int64).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != true.size:
        raise ValueError(f"expected scores of shape (N, C) with N={true.size}, got {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if true.size == 0:
        return 0.0
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == true[:, None]).any(axis=1).mean())


def worst_classes(report: dict[str, Any], n: int = 5, key: str = "f1") -> list[dict[str, Any]]:
    """The n classes with the lowest `key`, for spotting where a model fails.

    Classes with no examples in the evaluation set are skipped: their zeros say nothing about the
    model. Ties go to the class with more examples, since it costs more accuracy.
    """
    if key not in ("precision", "recall", "f1"):
        raise ValueError(f"key must be precision, recall or f1, got {key!r}")
    present = [row for row in report["per_class"] if row["support"] > 0]
    return sorted(present, key=lambda row: (row[key], -row["support"], row["index"]))[:n]


def _atomic_target(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target, target.with_suffix(".tmp")


def write_report_csv(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the per-class rows plus macro/weighted/accuracy rows as CSV, atomically."""
    target, tmp = _atomic_target(path)
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["class", *_REPORT_KEYS])
        for row in report["per_class"]:
            writer.writerow([row["class"], *(row[k] for k in _REPORT_KEYS)])
        for avg in ("macro", "weighted"):
            writer.writerow([f"{avg} avg", *(report[avg][k] for k in _REPORT_KEYS)])
        writer.writerow(["accuracy", "", "", report["accuracy"], report["num_samples"]])
    os.replace(tmp, target)
    return target


def plot_confusion_matrix(matrix: Any, labels: list[str], path: str | os.PathLike[str],
                          normalize: bool = True) -> Path:
    """Save the confusion matrix as a PNG heatmap, atomically.

    With normalize=True each row is divided by its support, so the diagonal reads as per-class
    recall and rare classes stay visible. Figure and font sizes follow the class count so labels
    stay legible up to ~120 classes; beyond 150 the tick labels are dropped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.figure import Figure

    values = _to_numpy(matrix).astype(np.float64)
    k = values.shape[0]
    if values.shape != (k, k) or len(labels) != k:
        raise ValueError(f"expected a square matrix matching {len(labels)} labels, got {values.shape}")
    if normalize:
        values = _safe_div(values, values.sum(axis=1, keepdims=True))

    side = min(max(6.0, 0.18 * k + 4.0), 30.0)
    cell_points = (side - 3.0) / max(k, 1) * 72.0  # roughly 3 inches go to labels and the colour bar
    font = max(4.0, min(10.0, 0.6 * cell_points))
    fig = Figure(figsize=(side, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", interpolation="nearest", vmin=0.0,
                      vmax=1.0 if normalize else max(float(values.max()), 1.0))
    fig.colorbar(image, ax=ax, shrink=0.8, pad=0.01)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    if k <= 150:
        ax.set_xticks(range(k), labels=labels, rotation=90, fontsize=font)
        ax.set_yticks(range(k), labels=labels, fontsize=font)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if k <= 20:
        threshold = 0.5 * (values.max() if values.size else 0.0)
        for i in range(k):
            for j in range(k):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(values[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=font,
                        color="white" if values[i, j] > threshold else "black")

    target, tmp = _atomic_target(path)
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, target)
    return target
