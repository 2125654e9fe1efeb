"""builtin:tiny-vit, builtin:tiny-deit and builtin:digits: a tiny ViT/DeiT and a real image set, made offline.

The models are real transformers ViT/DeiT classifiers with tiny configs (32x32 images, 8x8 patches), saved
with `save_pretrained` plus a ViTImageProcessor, so they load through the same `from_pretrained` path as a
Hub id. builtin:digits is scikit-learn's 8x8 handwritten digits (1797 images, 10 classes) written as an
ImageFolder of 32x32 RGB PNGs with train/ and test/ subfolders.

Everything is generated once into `cache_dir()`, keyed by a version string: built in a temporary folder
and renamed into place, so two processes racing to build it both end with the same complete folder.
"""

from __future__ import annotations

from pathlib import Path

from dlkit.core.progress import quiet_transformers
from dlkit.core.sources import cached_folder

IMAGE_SIZE = 32
PATCH_SIZE = 8


def _vision_kwargs() -> dict:
    # initializer_range 0.1 instead of the usual 0.02: random attention is then not uniform, so the class token
    # of the untrained model already carries where the strokes are (a linear probe on it reaches ~65% on digits).
    return dict(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        num_channels=3,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=10,
        initializer_range=0.1,
    )


def _save_processor(path: Path) -> None:
    from transformers import ViTImageProcessor

    ViTImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    ).save_pretrained(path)


def _build_vit(path: Path) -> None:
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    with quiet_transformers():
        ViTForImageClassification(ViTConfig(**_vision_kwargs())).save_pretrained(path)
    _save_processor(path)


def _build_deit(path: Path) -> None:
    import torch
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher

    torch.manual_seed(0)
    # The distilled DeiT checkpoints on the Hub are saved as the with-teacher class; fine-tuning loads them
    # as DeiTForImageClassification (one head on the class token), exactly as it does here.
    with quiet_transformers():
        DeiTForImageClassificationWithTeacher(DeiTConfig(**_vision_kwargs())).save_pretrained(path)
    _save_processor(path)


def tiny_vit() -> Path:
    """A save_pretrained folder of a randomly initialised ViTForImageClassification (2 layers, hidden 48)."""
    return cached_folder("tiny-vit-v2", _build_vit)


def tiny_deit() -> Path:
    """A save_pretrained folder of a randomly initialised distilled DeiT (2 layers, hidden 48)."""
    return cached_folder("tiny-deit-v2", _build_deit)


def _build_digits(path: Path, test_fraction: float = 0.2, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    num_test = int(len(order) * test_fraction)
    for rank, index in enumerate(order):
        split = "test" if rank < num_test else "train"
        label = int(digits.target[index])
        pixels = (digits.images[index] * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # (8, 8), values 0..16
        image = Image.fromarray(pixels, mode="L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        image = image.convert("RGB")
        folder = path / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index:04d}.png")


def digits() -> Path:
    """An ImageFolder (train/, test/; one folder per digit 0-9) of scikit-learn's handwritten digits."""
    return cached_folder("digits-v1", _build_digits)
