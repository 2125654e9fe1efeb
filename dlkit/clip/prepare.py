"""`dlkit clip prepare`: what a classification folder looks like to CLIP before any command scores it."""

from __future__ import annotations

import functools
from typing import Any

from dlkit.classify.preview import PreviewSplit, preview
from dlkit.clip.config import PrepareConfig
from dlkit.clip.data import SPLIT_NAMES, data_root, load_split
from dlkit.core.config import checked, claim_output
from dlkit.core.progress import info
from dlkit.data.images import open_image


def _open(paths: list[str], index: int) -> Any:
    return open_image(paths[index])


def prepare(cfg: PrepareConfig) -> dict[str, Any]:
    """Class names (as the prompts will say them) and counts per split folder, a grid of random labelled images,
    the image-size histogram and images per class, written into --output-dir."""
    checked(cfg)
    root = data_root(cfg.data)
    names: list[str | None] = [s for s in SPLIT_NAMES if (root / s).is_dir()] or [None]
    loaded = [(name or "all", load_split(cfg.data, name, cfg.classnames)) for name in names]
    splits = [PreviewSplit(name, images.labels, functools.partial(_open, images.paths)) for name, images in loaded]
    held = claim_output(cfg)
    stats = preview(splits, loaded[0][1].classes, held.root, cfg.data, cfg.seed)
    held.release()
    info(f"wrote {held.root}/plots/samples.png, image_sizes.png, class_counts.png and stats.json")
    return stats
