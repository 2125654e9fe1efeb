"""Text-to-image retrieval: rank a folder of images by cosine similarity to a text query (image features
cached like every other clip command), and draw the top k as a grid with their scores."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch.nn.functional as F

from dlkit.clip.config import RetrieveConfig
from dlkit.clip.data import LabeledImages
from dlkit.clip.features import image_features, text_features
from dlkit.clip.models import build_clip
from dlkit.core import plots
from dlkit.core.config import checked, claim_output, local_inputs
from dlkit.core.errors import ConfigError, DataError
from dlkit.core.outputs import check_output
from dlkit.core.run import atomic_write_json
from dlkit.data.images import IMAGE_SUFFIXES, open_image


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


def retrieve(cfg: RetrieveConfig) -> dict[str, Any]:
    """The k images closest to the query: grid.png and results.json in the output folder."""
    checked(cfg)
    query, images, k, model = cfg.query, cfg.images, cfg.k, cfg.model
    run = Path(cfg.run) if cfg.run is not None else None
    if run is not None:
        from dlkit.core.run import Run

        Run.open(run, group="clip")
        bundle = build_clip(str(run))
    else:
        assert model is not None  # checked: --run or --model
        bundle = build_clip(model, cfg.pretrained)
    items = image_list(images)
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")[:40] or "query"
    default = (run / "samples" / f"retrieve-{slug}") if run else Path("runs/clip") / f"retrieve-{slug}"
    check_output(
        Path(cfg.output_dir or default),
        "clip",
        "retrieve",
        overwrite=cfg.overwrite,
        flag="--output-dir",
        inputs=local_inputs(cfg),
    )
    feats = image_features(bundle, items, cfg.batch_size)
    query_emb = text_features(bundle, [query])[0]  # (D,) unit
    scores = F.normalize(feats.features, dim=-1) @ query_emb  # (N,)
    top = scores.topk(min(k, len(scores)))
    results = [
        {"rank": i + 1, "image": feats.paths[j], "score": float(s)}
        for i, (s, j) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True))
    ]
    held = claim_output(cfg, cfg.output_dir or default)
    folder = held.root
    result = {
        "query": query,
        "model": str(run or model),
        "images": images,
        "num_images": len(feats.paths),
        "skipped_items": len(feats.skipped),
        "results": results,
        "grid": str(folder / "grid.png"),
        "output_dir": str(folder),
    }

    atomic_write_json(folder / "results.json", result)
    draw_grid(results, query, folder / "grid.png")
    held.release()
    return result


def draw_grid(results: list[dict[str, Any]], query: str, path: Path) -> Path:
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
