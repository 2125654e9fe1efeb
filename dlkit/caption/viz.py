"""Figures of the caption group: image grids with captions, caption statistics and attention heatmaps."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.plots import new_figure, save_figure
from dlkit.data.images import open_image


def _wrap(lines: Sequence[str], width: int = 38) -> str:
    return "\n".join(textwrap.fill(line, width) for line in lines)


def caption_card(image_path: str, lines: Sequence[str], path: Path) -> Path:
    """One image with lines of text under it."""
    fig, ax = new_figure(4.2, 4.2 + 0.25 * len(lines))
    ax.imshow(open_image(image_path))
    ax.set_axis_off()
    ax.set_title(_wrap(lines, 48), fontsize=8, loc="left")
    return save_figure(fig, path)


CAPTION_FONT = 7  # points
LINE_HEIGHT = CAPTION_FONT * 1.2 / 72  # inches per caption line (matplotlib's default line spacing)
PANEL_WIDTH = 3.4  # inches per image


def caption_grid(items: Sequence[tuple[str, Sequence[str]]], path: Path, title: str = "") -> Path:
    """Up to 5 images side by side, each with its captions underneath."""
    return save_figure(caption_grid_figure(items, title), path)


def caption_grid_figure(items: Sequence[tuple[str, Sequence[str]]], title: str = "") -> Any:
    """The figure of `caption_grid`: a row of images, drawn at the panel width and as tall as the tallest needs,
    over a row of text as tall as the longest caption block, so no image squeezes its captions off the page."""
    import matplotlib.pyplot as plt

    items = list(items)[:5]
    images = [open_image(image) for image, _ in items]
    texts = [_wrap(lines, 40) for _, lines in items]
    image_height = PANEL_WIDTH * min(max(img.height / img.width for img in images), 2.0)  # inches
    text_height = LINE_HEIGHT * max(t.count("\n") + 1 for t in texts) + 0.15
    fig, axes = plt.subplots(
        2,
        len(items),
        squeeze=False,
        height_ratios=[image_height, text_height],
        figsize=(PANEL_WIDTH * len(items), image_height + text_height + (0.5 if title else 0.1)),
    )
    for image_ax, text_ax, image, text in zip(axes[0], axes[1], images, texts, strict=True):
        image_ax.imshow(image)
        image_ax.set_axis_off()
        text_ax.set_axis_off()
        text_ax.text(0.0, 1.0, text, fontsize=CAPTION_FONT, va="top", ha="left", transform=text_ax.transAxes)
    if title:
        fig.suptitle(title)
    return fig


def length_scatter(lengths: Sequence[int], path: Path) -> Path:
    """Caption length (words) of every caption, jittered, with the p95 marked."""
    rng = np.random.default_rng(0)
    values = np.asarray(lengths, dtype=float)
    fig, ax = new_figure(7, 3.5)
    ax.scatter(np.arange(len(values)), values + rng.uniform(-0.25, 0.25, len(values)), s=4, alpha=0.35)
    if len(values):
        p95 = float(np.percentile(values, 95))
        ax.axhline(p95, color="C3", linestyle="--", label=f"p95 = {p95:.0f} words")
        ax.legend(loc="upper right")
    ax.set_xlabel("caption")
    ax.set_ylabel("length (words)")
    ax.set_title("caption lengths")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def top_words(counts: Sequence[tuple[str, int]], path: Path) -> Path:
    """Horizontal bars of the most frequent words, most frequent at the top."""
    words = [w for w, _ in counts][::-1]
    values = [c for _, c in counts][::-1]
    fig, ax = new_figure(6, 0.28 * len(words) + 1.2)
    ax.barh(words, values, color="C0")
    ax.set_xlabel("occurrences")
    ax.set_title(f"{len(words)} most frequent words")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def attention_heatmap(image_path: str, alpha: Sequence[float], word: str, path: Path) -> Path:
    """The attention map over the feature grid, upsampled onto the image, for one emitted word."""
    image = open_image(image_path)
    side = int(round(len(alpha) ** 0.5))
    grid = np.asarray(alpha, dtype=float).reshape(side, side)
    fig, ax = new_figure(3.6, 3.8)
    ax.imshow(image)
    ax.imshow(grid, cmap="jet", alpha=0.45, extent=(0, image.width, image.height, 0), interpolation="bilinear")
    ax.set_axis_off()
    ax.set_title(word)
    return save_figure(fig, path)


def attention_strip(image_path: str, alphas: Sequence[Sequence[float]], words: Sequence[str], path: Path) -> Path:
    """All of a caption's attention maps side by side, the image first: the caption read word by word."""
    import matplotlib.pyplot as plt

    image = open_image(image_path)
    side = int(round(len(alphas[0]) ** 0.5)) if alphas else 1
    fig, axes = plt.subplots(1, len(words) + 1, figsize=(1.9 * (len(words) + 1), 2.3), squeeze=False)
    axes[0][0].imshow(image)
    axes[0][0].set_title("image", fontsize=9)
    for ax, word, alpha in zip(axes[0][1:], words, alphas, strict=False):
        ax.imshow(image)
        ax.imshow(
            np.asarray(alpha, dtype=float).reshape(side, side),
            cmap="jet",
            alpha=0.45,
            extent=(0, image.width, image.height, 0),
            interpolation="bilinear",
        )
        ax.set_title(word, fontsize=9)
    for ax in axes[0]:
        ax.set_axis_off()
    return save_figure(fig, path)
