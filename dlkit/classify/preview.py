"""What an image-classification dataset looks like before training (`dlkit vit prepare`, `dlkit clip prepare`):
class names and counts per split, a grid of random images with their labels, and the image sizes.

Groups pass their own splits (how they read a folder or a Hub dataset stays theirs); this module draws
and counts, so both previews agree.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlkit.core import plots
from dlkit.core.errors import DataError
from dlkit.core.run import atomic_write_json

MAX_SIZED = 2000  # images read for the size histogram (a seeded sample beyond that)


@dataclass
class PreviewSplit:
    name: str
    labels: list[int]
    load: Callable[[int], Any]  # i -> PIL image


def preview(
    splits: Sequence[PreviewSplit], class_names: Sequence[str], out: Path, data: str, seed: int = 0, grid: int = 16
) -> dict[str, Any]:
    """Write plots/samples.png, plots/image_sizes.png, plots/class_counts.png and stats.json into `out`."""
    splits = [s for s in splits if s.labels]
    if not splits:
        raise DataError(f"--data {data}: no images")
    rng = random.Random(seed)
    counts = {s.name: {name: 0 for name in class_names} for s in splits}
    for s in splits:
        for label in s.labels:
            counts[s.name][class_names[label]] += 1
    first = splits[0]
    picks = rng.sample(range(len(first.labels)), min(grid, len(first.labels)))
    _samples_grid(
        [(first.load(i), class_names[first.labels[i]]) for i in picks],
        out / "plots" / "samples.png",
        f"{len(picks)} random {first.name} images of {data}",
    )
    sized = [(s, i) for s in splits for i in range(len(s.labels))]
    if len(sized) > MAX_SIZED:
        sized = rng.sample(sized, MAX_SIZED)
    sizes = [s.load(i).size for s, i in sized]
    _size_histogram(sizes, out / "plots" / "image_sizes.png")
    _class_counts(counts, out / "plots" / "class_counts.png")
    widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
    stats = {
        "data": data,
        "classes": len(class_names),
        "class_names": list(class_names),
        "splits": {name: {"images": sum(c.values()), "per_class": c} for name, c in counts.items()},
        "images_sized": len(sizes),
        "width_min": min(widths),
        "width_max": max(widths),
        "height_min": min(heights),
        "height_max": max(heights),
        "output_dir": str(out),
    }
    atomic_write_json(out / "stats.json", stats)
    return stats


def counts_table(stats: dict[str, Any]) -> Any:
    """Classes as rows, splits as columns (a rich Table)."""
    from rich.table import Table

    splits = list(stats["splits"])
    table = Table(
        title=f"{stats['data']}: {stats['classes']} classes; images "
        f"{stats['width_min']}-{stats['width_max']} x {stats['height_min']}-{stats['height_max']} px"
    )
    table.add_column("class")
    for name in splits:
        table.add_column(name, justify="right")
    for cls in stats["class_names"]:
        table.add_row(cls, *[str(stats["splits"][s]["per_class"][cls]) for s in splits])
    table.add_row("[bold]total[/bold]", *[str(stats["splits"][s]["images"]) for s in splits])
    return table


def _samples_grid(items: list[tuple[Any, str]], path: Path, title: str) -> None:
    import math

    cols = min(4, len(items))
    rows = math.ceil(len(items) / cols)
    fig, _ = plots.new_figure(2.2 * cols, 2.4 * rows)
    axes = [fig.add_subplot(rows, cols, k + 1) for k in range(rows * cols)]
    fig.axes[0].remove()  # the empty axis new_figure made
    for ax, (image, label) in zip(axes, items, strict=False):
        ax.imshow(image)
        ax.set_title(label, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    plots.save_figure(fig, path)


def _size_histogram(sizes: list[tuple[int, int]], path: Path) -> None:
    fig, ax = plots.new_figure(7, 4)
    ax.hist([[w for w, _ in sizes], [h for _, h in sizes]], bins=30, label=["width", "height"])
    ax.set_xlabel("pixels")
    ax.set_ylabel("images")
    ax.set_title(f"image sizes ({len(sizes)} images)")
    ax.legend()
    plots.save_figure(fig, path)


def _class_counts(counts: dict[str, dict[str, int]], path: Path, limit: int = 60) -> None:
    names = list(next(iter(counts.values())))[:limit]
    fig, ax = plots.new_figure(max(6.0, 0.3 * len(names) + 2), 4)
    width = 0.8 / len(counts)
    for k, (split, per_class) in enumerate(counts.items()):
        ax.bar([i + k * width for i in range(len(names))], [per_class[n] for n in names], width, label=split)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("images")
    ax.set_title("images per class")
    ax.legend()
    plots.save_figure(fig, path)
