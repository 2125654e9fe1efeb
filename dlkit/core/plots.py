"""Matplotlib (Agg) figures shared by every group; each is saved atomically as a PNG."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlkit.core.outputs import FILE_MARK, atomic_write_bytes
from dlkit.metrics.classification import safe_div, to_numpy


def new_figure(width: float = 7.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def save_figure(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": FILE_MARK})  # who wrote it: dlkit.core.outputs
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _loss_series(history: Sequence[dict[str, Any]]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, train loss) of every train line and (step, val loss) of every eval line of a run's history."""
    train = [(r["step"], r["loss"]) for r in history if r.get("kind") == "train" and "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in history if r.get("kind") == "eval" and "val_loss" in r]
    return train, val


def _save_loss_axes(fig: Any, ax: Any, title: str, path: Path) -> Path:
    """Label a loss-per-step axis, then save its figure."""
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def loss_curves(history: Sequence[dict[str, Any]], path: Path, title: str = "loss") -> Path | None:
    """Train loss per logged step and val loss per eval, on one axis."""
    train, val = _loss_series(history)
    if not train and not val:
        return None
    fig, ax = new_figure()
    if train:
        ax.plot(*zip(*train, strict=False), label="train", linewidth=1.2)
    if val:
        ax.plot(*zip(*val, strict=False), marker="o", label="validation", linewidth=1.5)
    return _save_loss_axes(fig, ax, title, path)


def overlay_loss_curves(runs: Mapping[str, Sequence[dict[str, Any]]], path: Path) -> Path:
    """Several runs' train (solid) and val (dashed) losses on one axis, for `dlkit compare --plot`."""
    fig, ax = new_figure(8, 4.5)
    for i, (label, history) in enumerate(runs.items()):
        color = f"C{i % 10}"
        train, val = _loss_series(history)
        if train:
            ax.plot(*zip(*train, strict=False), color=color, label=f"{label} train", linewidth=1.0)
        if val:
            ax.plot(*zip(*val, strict=False), color=color, linestyle="--", marker="o", label=f"{label} val")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def bar_chart(labels: Sequence[str], values: Sequence[float], path: Path, ylabel: str, title: str = "") -> Path:
    fig, ax = new_figure(max(5.0, 0.6 * len(labels)), 4)
    ax.bar(range(len(labels)), values, color="C0")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def loss_scatter(history: Sequence[dict[str, Any]], path: Path, title: str = "training loss per batch") -> Path | None:
    """Every logged train loss as a point (one per batch with --log-every 1), with a moving average line."""
    points = [(r["step"], r["loss"]) for r in history if r.get("kind") == "train" and "loss" in r]
    if not points:
        return None
    steps, losses = zip(*points, strict=True)
    window = max(1, len(losses) // 20)
    smooth = [
        sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
        for i in range(len(losses))
    ]
    fig, ax = new_figure()
    ax.scatter(steps, losses, s=6, alpha=0.5, label="logged batch loss")
    ax.plot(steps, smooth, color="C3", linewidth=1.5, label=f"moving average ({window} points)")
    return _save_loss_axes(fig, ax, title, path)


def plot_confusion_matrix(matrix: Any, labels: list[str], path: Path, normalize: bool = True) -> Path:
    """Save the confusion matrix as a PNG heatmap, atomically.

    With normalize=True each row is divided by its support, so the diagonal reads as per-class
    recall and rare classes stay visible. Figure and font sizes follow the class count so labels
    stay legible up to ~120 classes; beyond 150 the tick labels are dropped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.figure import Figure

    values = to_numpy(matrix).astype(np.float64)
    k = values.shape[0]
    if values.shape != (k, k) or len(labels) != k:
        raise ValueError(f"expected a square matrix matching {len(labels)} labels, got {values.shape}")
    if normalize:
        values = safe_div(values, values.sum(axis=1, keepdims=True))

    side = min(max(6.0, 0.18 * k + 4.0), 30.0)
    cell_points = (side - 3.0) / max(k, 1) * 72.0  # roughly 3 inches go to labels and the colour bar
    font = max(4.0, min(10.0, 0.6 * cell_points))
    fig = Figure(figsize=(side, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(
        values,
        cmap="Blues",
        interpolation="nearest",
        vmin=0.0,
        vmax=1.0 if normalize else max(float(values.max()), 1.0),
    )
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
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=font,
                    color="white" if values[i, j] > threshold else "black",
                )

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
