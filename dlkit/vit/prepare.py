"""`dlkit vit prepare`: the images `vit train` would see, before it trains on them."""

from __future__ import annotations

from typing import Any

from dlkit.classify.preview import PreviewSplit, preview
from dlkit.core.config import checked, claim_output
from dlkit.core.progress import info
from dlkit.vit.config import PrepareConfig, VitConfig
from dlkit.vit.data import load_image_data


def prepare(cfg: PrepareConfig) -> dict[str, Any]:
    """Class names and counts per split (the split `vit train` uses), a grid of random labelled images, the
    image-size histogram and images per class, written into --output-dir."""
    checked(cfg)
    loaded = load_image_data(VitConfig(data=cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed))
    splits = [
        PreviewSplit("train", loaded.train.labels, loaded.train.load),
        PreviewSplit(f"validation ({loaded.val_split})", loaded.val.labels, loaded.val.load),
    ]
    if loaded.test is not None:
        splits.append(PreviewSplit(f"test ({loaded.test_split})", loaded.test.labels, loaded.test.load))
    held = claim_output(cfg)
    stats = preview(splits, loaded.label_names, held.root, cfg.data, cfg.seed)
    held.release()
    info(f"wrote {held.root}/plots/samples.png, image_sizes.png, class_counts.png and stats.json")
    return stats
