"""clip speed, printed as JSON (not asserted).

1. Images/s of `dlkit clip zeroshot` (fresh feature cache, so every image is decoded and encoded) against
   a CLIP_benchmark-style plain loop: open_clip.create_model_and_transforms, torchvision ImageFolder with the
   eval preprocessing, a DataLoader, open_clip.build_zero_shot_classifier, then encode_image -> normalise ->
   logits -> top-1 per batch. Same model, data, batch size and templates; both timed end to end (model
   creation included, imports warmed up first). Rounds alternate the two so a busy machine slows both
   alike; medians are compared (goal: ratio >= 1.0), by wall time and by the process's CPU time. A third
   number is dlkit's rerun with the cache warm (no image encoded).
2. `dlkit clip probe` training time on cached features of 10 classes x 1000 images (goal < 10 s).

    python benchmarks/clip_zeroshot.py [--model ViT-B-32] [--images-per-class 40] [--batch-size 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dlkit.core.config import load_config
from dlkit.core.progress import MODE


def make_folder(root: Path, classes: int, per_class: int, size: int) -> Path:
    """An ImageFolder of noisy coloured squares (PNG), one colour family per class."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for c in range(classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = torch.rand(3, generator=gen) * 200
        for i in range(per_class):
            pixels = (base[:, None, None] + 40 * torch.rand(3, size, size, generator=gen)).clamp(0, 255)
            Image.fromarray(pixels.byte().permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    return root


def dlkit_zeroshot(model: str, folder: Path, batch_size: int, cache: Path, out: Path) -> tuple[float, float]:
    from dlkit.clip.config import ZeroShotConfig
    from dlkit.clip.evaluate import zeroshot

    os.environ["DLKIT_CACHE"] = str(cache)
    cfg = load_config(
        ZeroShotConfig,
        None,
        {
            "model": model,
            "pretrained": "none",
            "data": str(folder),
            "templates": ["simple"],
            "batch_size": batch_size,
            "output_dir": str(out),
            "overwrite": True,
        },
    )
    start, cpu = time.perf_counter(), time.process_time()
    metrics = zeroshot(cfg)
    return (metrics["num_images"] / (time.perf_counter() - start), metrics["num_images"] / (time.process_time() - cpu))


def plain_zeroshot(model_name: str, folder: Path, batch_size: int) -> tuple[float, float]:
    """CLIP_benchmark's zero-shot evaluation reduced to its steps."""
    import open_clip
    from torchvision.datasets import ImageFolder

    start, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    dataset = ImageFolder(str(folder), transform=preprocess)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    classnames = [c.replace("_", " ") for c in dataset.classes]
    classifier = open_clip.build_zero_shot_classifier(model, tokenizer, classnames, ["a photo of a {}."])
    correct = total = 0
    with torch.no_grad():
        for images, target in loader:
            features = model.encode_image(images, normalize=True)
            logits = 100.0 * features @ classifier
            correct += (logits.argmax(dim=1) == target).sum().item()
            total += len(target)
    return total / (time.perf_counter() - start), total / (time.process_time() - cpu)


def probe_seconds(tmp: Path) -> dict[str, float]:
    from dlkit.clip.config import ProbeConfig
    from dlkit.clip.task import probe

    folder = make_folder(tmp / "probe_data", classes=10, per_class=1000, size=16)
    os.environ["DLKIT_CACHE"] = str(tmp / "probe_cache")
    base = {
        "model": "builtin:tiny-clip",
        "data": str(folder),
        "batch_size": 256,
        "epochs": 30,
        "output_dir": str(tmp / "probe_run"),
        "overwrite": True,
        "log_every": 10**9,
        "save_every": 10**9,
    }
    probe(load_config(ProbeConfig, None, base))  # encodes and caches the 10,000 images
    start = time.perf_counter()
    metrics = probe(load_config(ProbeConfig, None, base))
    return {
        "probe_wall_seconds": time.perf_counter() - start,
        "probe_train_seconds": metrics["train_seconds"],
        "probe_features_cached": metrics["image_features_cached"],
        "probe_train_images": metrics["train_images"],
        "probe_steps": metrics["steps"],
        "probe_test_accuracy": metrics["test_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--images-per-class", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    MODE.quiet = True
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = make_folder(tmp / "data", args.classes, args.images_per_class, 64)
        import matplotlib.pyplot  # noqa: F401  (imports and first-call costs kept out of both timings)
        import open_clip  # noqa: F401

        warmup = make_folder(tmp / "warmup", 2, 2, 64)
        dlkit_zeroshot(args.model, warmup, args.batch_size, tmp / "warmup_cache", tmp / "zs")
        plain_zeroshot(args.model, warmup, args.batch_size)
        ours, plain = [], []
        for r in range(args.rounds):  # alternate which goes first
            if r % 2:
                plain.append(plain_zeroshot(args.model, folder, args.batch_size))
            ours.append(dlkit_zeroshot(args.model, folder, args.batch_size, tmp / f"cache{r}", tmp / "zs"))
            if not r % 2:
                plain.append(plain_zeroshot(args.model, folder, args.batch_size))
        warm = dlkit_zeroshot(args.model, folder, args.batch_size, tmp / "cache0", tmp / "zs")
        result = {
            "model": args.model,
            "images": args.classes * args.images_per_class,
            "batch_size": args.batch_size,
            "threads": torch.get_num_threads(),
            "dlkit_images_per_second": statistics.median(x for x, _ in ours),
            "clip_benchmark_loop_images_per_second": statistics.median(x for x, _ in plain),
            "ratio": statistics.median(x for x, _ in ours) / statistics.median(x for x, _ in plain),
            "dlkit_images_per_cpu_second": statistics.median(c for _, c in ours),
            "clip_benchmark_loop_images_per_cpu_second": statistics.median(c for _, c in plain),
            "cpu_ratio": statistics.median(c for _, c in ours) / statistics.median(c for _, c in plain),
            "rounds_cpu_ratio": [round(o[1] / p[1], 3) for o, p in zip(ours, plain, strict=True)],
            "dlkit_cached_features_images_per_second": warm[0],
            "load_average": os.getloadavg()[0],
            **probe_seconds(tmp),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
