"""Text-to-image retrieval: rank a folder of images by cosine similarity to a text query (image features
cached like every other clip command), and draw the top k as a grid with their scores."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch.nn.functional as F

from dlkit.clip.data import LabeledImages
from dlkit.clip.features import image_features, text_features
from dlkit.clip.models import build_clip
from dlkit.core.errors import ConfigError, DataError
from dlkit.data.images import IMAGE_SUFFIXES


def image_list(spec: str) -> LabeledImages:
    """Every image under a folder (recursively) or a builtin data set's folder, sorted by path."""
    from dlkit.core.sources import resolve

    source = resolve(spec, "data", flag="--images")
    if source.kind == "hub":
        raise ConfigError(f"--images {spec}: pass a local folder of images or builtin:NAME")
    if source.kind == "builtin":
        from dlkit.builtin import BUILTINS

        root = Path(BUILTINS[source.value].load())
    else:
        root = source.path
    if not root.is_dir():
        raise DataError(f"--images {spec}: expected a folder of images, got a file")
    paths = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"--images {spec}: no images in {root} ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return LabeledImages(paths, [0] * len(paths), ["image"], ["."], str(root))


def retrieve(query: str, images: str, run: Path | None, model: str | None, pretrained: str, k: int,
             batch_size: int = 64, output: Path | None = None) -> dict[str, Any]:
    if (run is None) == (model is None):
        raise ConfigError("pass either --run (a `clip train` run) or --model (with --pretrained), not both or neither")
    if k < 1:
        raise ConfigError(f"-k must be >= 1 (got {k})")
    if not query.strip():
        raise ConfigError("--query is empty; describe the images to find, e.g. --query 'a dog'")
    if run is not None:
        from dlkit.core.run import Run

        Run.open(run, group="clip")
        bundle = build_clip(str(run))
    else:
        bundle = build_clip(model, pretrained)
    items = image_list(images)
    feats = image_features(bundle, items, batch_size)
    query_emb = text_features(bundle, [query])[0]  # (D,) unit
    scores = F.normalize(feats.features, dim=-1) @ query_emb  # (N,)
    top = scores.topk(min(k, len(scores)))
    results = [{"rank": i + 1, "image": feats.paths[j], "score": float(s)}
               for i, (s, j) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True))]
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")[:40] or "query"
    folder = output or ((run / "samples" / f"retrieve-{slug}") if run else Path("runs/clip") / f"retrieve-{slug}")
    result = {"query": query, "model": str(run or model), "images": images, "num_images": len(feats.paths),
              "skipped_items": len(feats.skipped), "results": results,
              "grid": str(folder / "grid.png"), "output_dir": str(folder)}
    from dlkit.core.run import atomic_write_json

    atomic_write_json(folder / "results.json", result)
    draw_grid(results, query, folder / "grid.png")
    return result


def draw_grid(results: list[dict[str, Any]], query: str, path: Path) -> Path:
    from dlkit.core import plots
    from dlkit.data.images import open_image

    cols = min(3, len(results)) if len(results) <= 9 else math.ceil(math.sqrt(len(results)))
    rows = math.ceil(len(results) / cols)
    fig, axes = plots.new_figure(3.0 * cols, 3.2 * rows)
    fig.clf()
    for i, item in enumerate(results):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(open_image(item["image"]))
        ax.set_title(f"{item['rank']}. {item['score']:.3f}\n{Path(item['image']).name}", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"query: {query}")
    return plots.save_figure(fig, path)
