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


def tiny_clip_and_batch(n: int, seed: int = 0):
    """A random 32px ViT CLIP (LayerNorm only, no dropout: each example's features are independent of the
    rest of its batch) in train mode, and n random images and token rows."""
    import torch

    from dlkit.clip.models import build_from_config, clip_config

    config = clip_config(
        "vit-small", embed_dim=16, image_size=32, text_width=16, text_layers=1, text_heads=2, context_length=8
    )
    model = build_from_config("clip-ddp-test", config, seed).model.train()
    gen = torch.Generator().manual_seed(seed)
    return model, torch.randn(n, 3, 32, 32, generator=gen), torch.randint(1, 49407, (n, 8), generator=gen)
