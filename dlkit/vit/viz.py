"""Figures for `vit eval`: the most confident mistakes as a grid of images."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dlkit.core import plots


def mistakes_grid(examples: list[tuple[Any, dict[str, Any]]], path: Path, columns: int = 4) -> Path | None:
    """Each (PIL image, misclassified row) as a tile titled 'true -> predicted (confidence)'."""
    if not examples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(columns, len(examples))
    rows = math.ceil(len(examples) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows + 0.4), squeeze=False)
    flat = list(axes.flatten())
    for ax in flat:
        ax.axis("off")
    for ax, (image, row) in zip(flat, examples, strict=False):
        ax.imshow(image)
        ax.set_title(f"{row['true']} -> {row['predicted']} ({row['confidence']:.2f})", fontsize=9, color="C3")
    fig.suptitle("most confident mistakes (true -> predicted)")
    return plots.save_figure(fig, path)
