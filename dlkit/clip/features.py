"""Image and text embeddings, cached on disk keyed by (model and weights, data files, preprocessing), so
comparing templates, fixing a class, the embedding mode of CoOp and linear probes never re-encode images.

Image features are stored unnormalised (the probe trains on them as they are); zero-shot normalises them.
Images that fail to decode are skipped and counted while encoding; the cache remembers which.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from dlkit.clip.data import LabeledImages
from dlkit.clip.models import ClipBundle
from dlkit.core.errors import DataError
from dlkit.core.features import precompute
from dlkit.core.progress import info, warn
from dlkit.core.run import atomic_write_json
from dlkit.core.sources import cache_dir
from dlkit.core.weights import load_cached
from dlkit.data.images import open_image

VERSION = "v1"


@dataclass
class ImageFeatures:
    features: torch.Tensor  # (N, D) float32, unnormalised
    labels: torch.Tensor  # (N,) int64
    paths: list[str]  # the N decodable images
    skipped: list[str]  # undecodable images left out
    cached: bool  # True when read from the cache (nothing was encoded)


class _Images(Dataset):
    def __init__(self, paths: list[str], transform, strict: bool):
        self.paths, self.transform, self.strict = paths, transform, strict

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor | None:
        try:
            image = open_image(self.paths[index])
        except DataError:
            if self.strict:
                raise
            return None  # left out by precompute, and counted
        return self.transform(image)


def feature_cache_dir() -> Path:
    return cache_dir() / "clip-features"


def image_key(bundle: ClipBundle, images: LabeledImages) -> str:
    parts = [VERSION, bundle.key, repr(bundle.preprocess_eval), images.fingerprint()]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:20]


def image_features(
    bundle: ClipBundle,
    images: LabeledImages,
    batch_size: int = 64,
    num_workers: int = 0,
    strict: bool = False,
    cache: bool = True,
) -> ImageFeatures:
    """Embeddings of every decodable image, from the cache when this exact (model, data, preprocessing) was seen;
    `cache=False` encodes without reading or writing it (weights the key cannot name, e.g. during training)."""
    key = image_key(bundle, images)
    path = feature_cache_dir() / f"{key}.safetensors"
    tensors = load_cached(path) if cache else None
    if tensors is not None and path.with_suffix(".json").is_file():
        kept = tensors["indices"].tolist()
        meta = json.loads((path.with_suffix(".json")).read_text(encoding="utf-8"))
        return ImageFeatures(
            tensors["features"],
            torch.tensor([images.labels[i] for i in kept]),
            [images.paths[i] for i in kept],
            meta["skipped"],
            cached=True,
        )
    model = bundle.model
    device = next(model.parameters()).device
    try:
        computed = precompute(
            _Images(images.paths, bundle.preprocess_eval, strict),
            torch.stack,
            lambda pixels: model.encode_image(pixels.to(device)),
            batch_size,
            num_workers=num_workers,
            what="images",
        )
    except DataError:
        raise DataError(f"--data {images.where}: none of the {len(images)} images could be decoded") from None
    kept = computed.kept
    skipped = sorted(set(range(len(images))) - set(kept))
    skipped_paths = [images.paths[i] for i in skipped]
    if skipped:
        warn(f"{len(skipped)} undecodable image(s) skipped, e.g. {skipped_paths[0]}")
    features = computed.store.tensor
    if cache:
        _save(path, {"features": features.contiguous(), "indices": torch.tensor(kept)}, {"skipped": skipped_paths})
        info(f"encoded {len(kept)} images with {bundle.name} (cached as {path.name})")
    return ImageFeatures(
        features,
        torch.tensor([images.labels[i] for i in kept]),
        [images.paths[i] for i in kept],
        skipped_paths,
        cached=False,
    )


def text_features(bundle: ClipBundle, texts: list[str], batch_size: int = 256, cache: bool = True) -> torch.Tensor:
    """(T, D) L2-normalised text embeddings, cached per (model, texts) unless `cache=False`."""
    digest = hashlib.sha1("\n".join([VERSION, bundle.key, *texts]).encode()).hexdigest()[:20]
    path = feature_cache_dir() / f"text-{digest}.safetensors"
    cached = load_cached(path) if cache else None
    if cached is not None:
        return cached["features"]
    model = bundle.model
    device = next(model.parameters()).device
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            tokens = bundle.tokenizer(texts[start : start + batch_size]).to(device)
            chunks.append(model.encode_text(tokens, normalize=True).float().cpu())
    features = torch.cat(chunks)
    if cache:
        _save(path, {"features": features.contiguous()}, None)
    return features


def _save(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None) -> None:
    """Write atomically: a parallel process either sees the whole file or none."""
    import os

    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    if meta is not None:
        atomic_write_json(path.with_suffix(".json"), meta)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
