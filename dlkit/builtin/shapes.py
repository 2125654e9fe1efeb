"""builtin:shapes and builtin:shape-classes: generated images of coloured shapes with a known answer.

builtin:shapes is a captioning set in the Kaggle Flickr8k layout (`Images/*.png` + `captions.txt`):
two coloured shapes side by side or one above the other, five reference captions each
("A red circle left of a blue square ."), and `ground_truth.json` with every object's shape, colour
and bounding box, so a test can check where an attention model looks when it names a shape.

builtin:shape-classes is an ImageFolder (`train/<shape>/*.png`, `test/<shape>/*.png`) of single
shapes in random colours, sizes and positions, for classification (zero-shot, linear probes).

Both are generated once per (version, seed) into the dlkit cache: built in a temporary folder and
renamed into place, so parallel test processes never see half a dataset.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from pathlib import Path

from dlkit.core.sources import cached_folder

VERSION = "v1"
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 80, 225), "yellow": (235, 200, 30)}
CAPTION_SHAPES = ("circle", "square", "triangle", "star")
CLASS_SHAPES = ("circle", "square", "triangle", "star", "diamond", "hexagon")
BACKGROUND = (236, 236, 230)


def shapes_folder(num_images: int = 600, image_size: int = 64, seed: int = 0) -> Path:
    """The captioning set's folder (generated on first use)."""
    key = f"shapes-{VERSION}-n{num_images}-s{image_size}-seed{seed}"
    return cached_folder(f"builtin/{key}", lambda tmp: _write_caption_set(tmp, num_images, image_size, seed))


def shape_classes_folder(per_class: int = 40, test_per_class: int = 10, image_size: int = 64, seed: int = 0) -> Path:
    """The ImageFolder classification set's root (generated on first use)."""
    key = f"shape-classes-{VERSION}-n{per_class}-{test_per_class}-s{image_size}-seed{seed}"
    return cached_folder(
        f"builtin/{key}", lambda tmp: _write_class_set(tmp, per_class, test_per_class, image_size, seed)
    )


def ground_truth(folder: str | Path) -> dict:
    """{"image_size": S, "images": {file name: {"relation": ..., "objects": [{shape, colour, bbox}]}}}."""
    return json.loads((Path(folder) / "ground_truth.json").read_text(encoding="utf-8"))


# -- generation -------------------------------------------------------------------------------------


def _write_caption_set(root: Path, num_images: int, size: int, seed: int) -> None:
    rng = random.Random(seed)
    (root / "Images").mkdir()
    rows: list[tuple[str, str]] = []
    truth = {}
    kinds = [(colour, shape) for colour in COLOURS for shape in CAPTION_SHAPES]
    for i in range(num_images):
        first, second = rng.sample(kinds, 2)
        relation = rng.choice(["left of", "above"])
        boxes = _two_boxes(rng, size, relation)
        image = _canvas(size)
        objects = []
        for (colour, shape), box in zip((first, second), boxes, strict=True):
            _draw(image, shape, COLOURS[colour], box)
            objects.append({"shape": shape, "colour": colour, "bbox": list(box)})
        name = f"shape_{i:05d}.png"
        _save_png(image, root / "Images" / name)
        truth[name] = {"relation": relation, "objects": objects}
        rows.extend((name, caption) for caption in _captions(first, second, relation))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "caption"])
    writer.writerows(rows)
    (root / "captions.txt").write_text(buf.getvalue(), encoding="utf-8")
    meta = {"version": VERSION, "seed": seed, "image_size": size, "images": truth}
    (root / "ground_truth.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def _captions(first: tuple[str, str], second: tuple[str, str], relation: str) -> list[str]:
    a, b = " ".join(first), " ".join(second)
    if relation == "left of":
        return [
            f"A {a} left of a {b} .",
            f"A {b} right of a {a} .",
            f"A {a} and a {b} .",
            f"A {a} on the left and a {b} on the right .",
            f"The {a} is left of the {b} .",
        ]
    return [
        f"A {a} above a {b} .",
        f"A {b} below a {a} .",
        f"A {a} and a {b} .",
        f"A {a} on top and a {b} at the bottom .",
        f"The {a} is above the {b} .",
    ]


def _two_boxes(rng: random.Random, size: int, relation: str) -> list[tuple[int, int, int, int]]:
    """Two non-overlapping boxes: the first in the left (or top) half, the second in the other."""
    half = size // 2
    boxes = []
    for slot in range(2):
        side = rng.randint(size * 7 // 32, size * 11 // 32)  # 14..22 px at 64
        along = rng.randint(slot * half + 1, (slot + 1) * half - side - 1)
        across = rng.randint(2, size - side - 2)
        x0, y0 = (along, across) if relation == "left of" else (across, along)
        boxes.append((x0, y0, x0 + side, y0 + side))
    return boxes


def _write_class_set(root: Path, per_class: int, test_per_class: int, size: int, seed: int) -> None:
    rng = random.Random(seed)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for shape in CLASS_SHAPES:
            folder = root / split / shape
            folder.mkdir(parents=True)
            for i in range(count):
                side = rng.randint(size * 3 // 8, size * 3 // 4)
                x0, y0 = rng.randint(1, size - side - 1), rng.randint(1, size - side - 1)
                colour = COLOURS[rng.choice(list(COLOURS))]
                image = _canvas(size)
                _draw(image, shape, colour, (x0, y0, x0 + side, y0 + side))
                _save_png(image, folder / f"{shape}_{i:04d}.png")


def _canvas(size: int):
    from PIL import Image

    return Image.new("RGB", (size, size), BACKGROUND)


def _draw(image, shape: str, colour: tuple[int, int, int], box: tuple[int, int, int, int]) -> None:
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle((x0 + r * 0.1, y0 + r * 0.1, x1 - r * 0.1, y1 - r * 0.1), fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "star":
        draw.polygon(_regular(cx, cy, r, 5, inner=0.45), fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif shape == "hexagon":
        draw.polygon(_regular(cx, cy, r, 6), fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _regular(cx: float, cy: float, r: float, points: int, inner: float | None = None) -> list[tuple[float, float]]:
    """A regular polygon, or a star when `inner` (the inner radius as a fraction of r) is given."""
    steps = points * 2 if inner else points
    out = []
    for k in range(steps):
        radius = r * inner if inner and k % 2 else r
        angle = -math.pi / 2 + 2 * math.pi * k / steps
        out.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return out


def _save_png(image, path: Path) -> None:
    image.save(path, format="PNG")
