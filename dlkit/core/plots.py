"""Matplotlib (Agg) figures shared by every group; each is saved atomically as a PNG."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlkit.core.run import atomic_write_bytes


def new_figure(width: float = 7.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def save_figure(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def loss_curves(history: Sequence[dict[str, Any]], path: Path, title: str = "loss") -> Path | None:
    """Train loss per logged step and val loss per eval, on one axis."""
    train = [(r["step"], r["loss"]) for r in history if r.get("kind") == "train" and "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in history if r.get("kind") == "eval" and "val_loss" in r]
    if not train and not val:
        return None
    fig, ax = new_figure()
    if train:
        ax.plot(*zip(*train, strict=False), label="train", linewidth=1.2)
    if val:
        ax.plot(*zip(*val, strict=False), marker="o", label="validation", linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def overlay_loss_curves(runs: dict[str, Sequence[dict[str, Any]]], path: Path) -> Path:
    """Several runs' train (solid) and val (dashed) losses on one axis, for `dlkit compare --plot`."""
    fig, ax = new_figure(8, 4.5)
    for i, (label, history) in enumerate(runs.items()):
        color = f"C{i % 10}"
        train = [(r["step"], r["loss"]) for r in history if r.get("kind") == "train" and "loss" in r]
        val = [(r["step"], r["val_loss"]) for r in history if r.get("kind") == "eval" and "val_loss" in r]
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
    smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
              for i in range(len(losses))]
    fig, ax = new_figure()
    ax.scatter(steps, losses, s=6, alpha=0.5, label="logged batch loss")
    ax.plot(steps, smooth, color="C3", linewidth=1.5, label=f"moving average ({window} points)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
