"""Helpers of the clip tests (imported by name; fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path


def make_image_folder(root: Path, classes: dict[str, int], size: int = 16) -> Path:
    """root/CLASS/NAME.png with a distinct solid colour per class."""
    from PIL import Image

    colours = [(220, 40, 40), (40, 170, 60), (50, 80, 225), (235, 200, 30), (120, 40, 160)]
    for c, (name, count) in enumerate(classes.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shade = tuple(max(0, v - 10 * i) for v in colours[c % len(colours)])
            Image.new("RGB", (size, size), shade).save(folder / f"{i:03d}.png")
    return root
