"""Figures of the caption group: image grids with captions, caption statistics and attention heatmaps."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

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


def caption_grid(items: Sequence[tuple[str, Sequence[str]]], path: Path, title: str = "") -> Path:
    """Up to 5 images side by side, each with its captions underneath."""
    import matplotlib.pyplot as plt

    items = list(items)[:5]
    texts = [_wrap(lines, 40) for _, lines in items]
    rows = max(t.count("\n") + 1 for t in texts)
    fig, axes = plt.subplots(1, len(items), figsize=(3.4 * len(items), 4.2 + 0.16 * rows), squeeze=False)
    for ax, (image, _), text in zip(axes[0], items, texts, strict=True):
        ax.imshow(open_image(image))
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xlabel(text, fontsize=7, loc="left", multialignment="left")  # tight_layout makes room for labels
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


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
        ax.imshow(np.asarray(alpha, dtype=float).reshape(side, side), cmap="jet", alpha=0.45,
                  extent=(0, image.width, image.height, 0), interpolation="bilinear")
        ax.set_title(word, fontsize=9)
    for ax in axes[0]:
        ax.set_axis_off()
    return save_figure(fig, path)
