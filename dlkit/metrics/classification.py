"""Classification metrics: a per-class report, top-k accuracy and the worst classes. Pure: the report's
CSV and confusion-matrix PNG are written by dlkit.core (classification.write_report_csv, plots).

Labels are integer class indices 0..K-1; class names are only used for display. Any division by
zero (a class never predicted or never present) gives 0.0, matching scikit-learn's zero_division=0.
"""

from __future__ import annotations

from typing import Any

REPORT_KEYS = ("precision", "recall", "f1", "support")


def to_numpy(values: Any) -> Any:
    import numpy as np

    if hasattr(values, "detach"):  # torch tensor, possibly on an accelerator
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def safe_div(num: Any, den: Any) -> Any:
    import numpy as np

    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def classification_report(
    y_true: Any, y_pred: Any, labels: list[str] | None = None, num_classes: int | None = None
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages, confusion matrix.

    The class count is num_classes, else len(labels), else the largest index seen + 1, so classes
    absent from a small evaluation set still get a row. Confusion matrix rows are true classes and
    columns predicted classes. The result holds only plain Python types so it can be dumped as JSON.
    """
    import numpy as np

    true = to_numpy(y_true).astype(np.int64).reshape(-1)
    pred = to_numpy(y_pred).astype(np.int64).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} items but y_pred has {pred.size}")
    if num_classes is None:
        num_classes = len(labels) if labels is not None else int(max(true.max(initial=-1), pred.max(initial=-1)) + 1)
    if labels is not None and len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for {num_classes} classes")
    if true.size and (min(true.min(), pred.min()) < 0 or max(true.max(), pred.max()) >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes})")
    names = list(labels) if labels is not None else [str(i) for i in range(num_classes)]

    matrix: np.ndarray = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = safe_div(tp, predicted)
    recall = safe_div(tp, support)
    f1 = safe_div(2 * tp, support + predicted)  # equals 2PR/(P+R), without the 0/0 case

    per_class = [
        {
            "class": names[i],
            "index": i,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in range(num_classes)
    ]
    total = int(support.sum())
    weights = safe_div(support, total)
    return {
        "accuracy": float(safe_div(tp.sum(), total)),
        "num_samples": total,
        "num_classes": num_classes,
        "per_class": per_class,
        "macro": {
            "precision": float(precision.mean()) if num_classes else 0.0,
            "recall": float(recall.mean()) if num_classes else 0.0,
            "f1": float(f1.mean()) if num_classes else 0.0,
            "support": total,
        },
        "weighted": {
            "precision": float(precision @ weights),
            "recall": float(recall @ weights),
            "f1": float(f1 @ weights),
            "support": total,
        },
        "confusion_matrix": matrix.tolist(),
    }


def topk_accuracy(logits_or_scores: Any, y_true: Any, k: int) -> float:
    """Fraction of rows whose true class is among the k highest scores (ties go to the lower index)."""
    import numpy as np

    scores = to_numpy(logits_or_scores).astype(np.float64)
    true = to_numpy(y_true).astype(np.int64).reshape(-1)
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
