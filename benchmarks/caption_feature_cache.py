"""Caption training speed, printed as JSON (not asserted).

1. --cache-features: time per epoch with a frozen EfficientNet-B0 run on every batch vs. training on its
   features computed once (same data, same decoder, same steps). The epoch time is extrapolated from
   `--steps` optimizer steps of train time (eval excluded); the one-off cost of computing the features
   is reported apart. Goal: >= 5x.
2. Training images/s (image-caption pairs per second) of every --arch on builtin:shapes at 64x64 with
   the tiny-cnn encoder (vit-gpt2: builtin:tiny-vit-gpt2).

    python benchmarks/caption_feature_cache.py [--steps 20] [--image-size 128] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from dlkit.caption.config import CaptionConfig
from dlkit.caption.task import train as train_captioner
from dlkit.core.config import load_config
from dlkit.core.progress import MODE

QUIET = {"eval_every": 10**9, "save_every": 10**9, "log_every": 10**9, "warmup": 0, "overwrite": True}


def train(out: Path, **settings) -> tuple[dict, float]:
    cfg = load_config(CaptionConfig, None, {"data": "builtin:shapes", "output_dir": str(out), **QUIET, **settings})
    start = time.perf_counter()
    metrics = train_captioner(cfg)
    return metrics, time.perf_counter() - start


def feature_cache(root: Path, steps: int, image_size: int) -> dict:
    common = {
        "arch": "attention",
        "encoder": "efficientnet_b0",
        "freeze_encoder": True,
        "image_size": image_size,
        "max_steps": steps,
        "batch_size": 32,
    }
    recomputed, _ = train(root / "recomputed", **common)
    with tempfile.TemporaryDirectory() as cache:  # a cold feature cache, so its cost is measured
        os.environ["DLKIT_CACHE"] = cache
        cached, wall = train(root / "cached", cache_features=True, **common)
        os.environ.pop("DLKIT_CACHE")
    pairs_per_epoch = cached["train_images"] * 5  # builtin:shapes has 5 captions per image
    epoch = {
        name: pairs_per_epoch / m["samples_per_second"] for name, m in (("recomputed", recomputed), ("cached", cached))
    }
    return {
        "encoder": "efficientnet_b0 (frozen)",
        "image_size": image_size,
        "steps_timed": steps,
        "epoch_seconds_recomputed": epoch["recomputed"],
        "epoch_seconds_cached": epoch["cached"],
        "speedup": epoch["recomputed"] / epoch["cached"],
        "feature_extraction_seconds_once": wall - cached["train_seconds"],
        "images_per_second_recomputed": recomputed["samples_per_second"],
        "images_per_second_cached": cached["samples_per_second"],
    }


def per_arch(root: Path, steps: int) -> dict:
    out = {}
    for arch in ("lstm", "attention", "transformer", "vit-gpt2"):
        metrics, _ = train(root / arch, arch=arch, max_steps=steps, batch_size=32)
        out[arch] = {
            "images_per_second": metrics["samples_per_second"],
            "trainable_params": metrics["trainable_params"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    MODE.quiet = True
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "threads": args.threads,
            "feature_cache": feature_cache(Path(tmp), args.steps, args.image_size),
            "train_images_per_second": per_arch(Path(tmp), args.steps),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
