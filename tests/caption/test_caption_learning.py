"""It learns: captioners trained for a few epochs on builtin:shapes describe held-out images, and the soft
attention looks at the shape it names. A constant caption scores BLEU-4 ~0.24 on this test split and names
both objects of ~0.5% of the images, so the thresholds below need a model that reads the image."""

import json
from pathlib import Path

import numpy as np
import pytest

from dlkit.builtin import BUILTINS
from dlkit.builtin.shapes import CAPTION_SHAPES, COLOURS, ground_truth

SMALL = [
    "--image-size",
    "32",
    "--embed-dim",
    "64",
    "--hidden-dim",
    "128",
    "--attention-dim",
    "64",
    "--save-every",
    "100000",
    "--seed",
    "0",
]
ARCH_SETTINGS = {
    "attention": ["--epochs", "4", "--batch-size", "32", "--lr", "0.003", "--alpha-c", "0"],
    "transformer": ["--epochs", "3", "--batch-size", "32", "--lr", "0.003", "--num-layers", "2", "--num-heads", "4"],
}


def train(root: Path, arch: str) -> Path:
    from dlkit.cli import main

    run = root / arch
    code = main(["caption", "train", "--arch", arch, *SMALL, *ARCH_SETTINGS[arch], "--output-dir", str(run), "-q"])
    assert code == 0
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("caption-learning")
    return {arch: train(root, arch) for arch in ARCH_SETTINGS}


def named_objects(caption: str) -> set[tuple[str, str]]:
    words = caption.split()
    return {(a, b) for a, b in zip(words, words[1:], strict=False) if a in COLOURS and b in CAPTION_SHAPES}


@pytest.mark.parametrize("arch", list(ARCH_SETTINGS))
def test_captioner_learns_shapes(cli, runs, arch):
    result = cli("caption", "eval", "--run", runs[arch], "--beam-size", "1", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["test_bleu4"] > 0.45, metrics
    truth = ground_truth(BUILTINS["shapes"].load())["images"]
    predictions = json.loads((runs[arch] / "eval.json").read_text())["predictions"]
    correct = [
        named_objects(p["caption"]) == {(o["colour"], o["shape"]) for o in truth[Path(p["image"]).name]["objects"]}
        for p in predictions
    ]
    assert np.mean(correct) > 0.1, np.mean(correct)  # both objects right; chance ~1/240


def box_mask(bbox: list[int], side: int, image_size: int) -> np.ndarray:
    """Grid cells (side x side) that overlap the box."""
    x0, y0, x1, y1 = (v * side / image_size for v in bbox)
    cells = np.arange(side)
    cols = (cells + 1 > x0) & (cells < x1)
    rows = (cells + 1 > y0) & (cells < y1)
    return rows[:, None] & cols[None, :]


def test_attention_peaks_on_the_named_shape(runs):
    """When the caption names an object (its colour then its shape), the attention map of the shape word holds
    more mass inside that object's box than inside the other object's box."""
    from dlkit.caption.evaluate import Captioner, split_records_of
    from dlkit.core.run import Run

    run = Run.open(runs["attention"], group="caption")
    records = split_records_of(run, "test")
    truth = ground_truth(BUILTINS["shapes"].load())
    generated = Captioner(run).caption([r.image for r in records], beam_size=1)
    margins = []
    for record, caption in zip(records, generated, strict=True):
        objects = truth["images"][Path(record.image).name]["objects"]
        if (objects[0]["colour"], objects[0]["shape"]) == (objects[1]["colour"], objects[1]["shape"]):
            continue
        words = caption.text.split()
        side = int(round(len(caption.alphas[0]) ** 0.5))
        for k in range(1, len(words)):
            for j, obj in enumerate(objects):
                if (words[k - 1], words[k]) == (obj["colour"], obj["shape"]):
                    alpha = np.asarray(caption.alphas[k]).reshape(side, side)
                    mine = alpha[box_mask(obj["bbox"], side, truth["image_size"])].sum()
                    other = alpha[box_mask(objects[1 - j]["bbox"], side, truth["image_size"])].sum()
                    margins.append(mine - other)
    margins = np.asarray(margins)
    assert len(margins) > 30
    assert (margins > 0).mean() > 0.65 and margins.mean() > 0.1, ((margins > 0).mean(), margins.mean())


def test_predict_writes_one_heatmap_per_word(cli, runs):
    image = sorted((runs["attention"] / "data" / "test_images.txt").read_text().split())[0]
    result = cli("caption", "predict", "--run", runs["attention"], image, "--beam-size", "3", "--heatmap", "--json")
    assert result.exit_code == 0, result.stderr
    caption = json.loads(result.stdout)[0]["caption"]
    heatmaps = sorted((runs["attention"] / "samples" / "heatmaps" / Path(image).stem).glob("*.png"))
    assert [p.stem.split("_", 1)[1] for p in heatmaps] == caption.split()
    assert (runs["attention"] / "samples" / "heatmaps" / f"{Path(image).stem}.png").is_file()
