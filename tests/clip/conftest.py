"""clip tests share one dlkit cache per session (generated shape sets, model configs, cached features),
run torch on one thread, and build small ImageFolders with a known layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def clip_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("dlkit_cache")
    before = os.environ.get("DLKIT_CACHE")
    os.environ["DLKIT_CACHE"] = str(cache)
    yield cache
    if before is None:
        os.environ.pop("DLKIT_CACHE", None)
    else:
        os.environ["DLKIT_CACHE"] = before


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is faster than several fighting over a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


@pytest.fixture
def colour_folder(tmp_path: Path) -> Path:
    """Three classes in WordNet-style folder names, four images each."""
    return make_image_folder(tmp_path / "colours", {"n00000001-Red_Thing": 4, "n00000002-green_thing": 4,
                                                   "n00000003-Blue-Thing": 4})
