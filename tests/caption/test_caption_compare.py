"""`dlkit caption compare RUN...`: the same test images captioned by each run, side by side."""

from __future__ import annotations

import json

import pytest
from PIL import Image

FAST = [
    "--image-size",
    "32",
    "--embed-dim",
    "16",
    "--hidden-dim",
    "32",
    "--attention-dim",
    "16",
    "--num-layers",
    "1",
    "--num-heads",
    "2",
    "--batch-size",
    "16",
    "--save-every",
    "100000",
    "--eval-every",
    "100000",
    "--max-steps",
    "2",
    "--beam-size",
    "1",
    "-q",
]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from dlkit.cli import main

    root = tmp_path_factory.mktemp("compare")
    (root / "data" / "Images").mkdir(parents=True)
    lines = ["image,caption"]
    colours = ["red", "green", "blue", "white"]
    for i in range(20):
        Image.new("RGB", (32, 32), (i * 12, 80, 40)).save(root / "data" / "Images" / f"{i}.jpg")
        lines += [f"{i}.jpg,a {colours[i % 4]} square .", f"{i}.jpg,the square is {colours[i % 4]} ."]
    (root / "data" / "captions.txt").write_text("\n".join(lines) + "\n")
    runs = []
    for arch in ("lstm", "transformer"):
        assert (
            main(
                [
                    "caption",
                    "train",
                    "--arch",
                    arch,
                    "--data",
                    str(root / "data"),
                    *FAST,
                    "--output-dir",
                    str(root / arch),
                ]
            )
            == 0
        )
        runs.append(root / arch)
    return runs


def test_compare_two_runs_side_by_side(cli, two_runs, tmp_path):
    from sacrebleu.metrics import BLEU

    out = tmp_path / "cmp"
    result = cli("--json", "caption", "compare", *two_runs, "--limit", "5", "--beam-size", "1", "--output-dir", out)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["split"] == "test" and summary["images"] == 2 and set(summary["bleu4"]) == {"lstm", "transformer"}
    report = json.loads((out / "compare.json").read_text())
    test_images = sorted((two_runs[0] / "data" / "test_images.txt").read_text().split())
    assert sorted(r["image"] for r in report["rows"]) == test_images
    for label in ("lstm", "transformer"):
        hyps = [r["runs"][label]["caption"] for r in report["rows"]]
        refs = [r["references"] for r in report["rows"]]
        columns = [[ref[k] for ref in refs] for k in range(2)]
        expected = BLEU(tokenize="none", smooth_method="none", force=True).corpus_score(hyps, columns).score / 100
        assert report["bleu4"][label] == pytest.approx(expected, abs=1e-9)
    assert all(0 <= r["disagreement"] <= 1 for r in report["rows"])
    worst = max(report["rows"], key=lambda r: r["disagreement"])["image"]
    assert report["most_disagreement"][0] == worst
    markdown = (out / "compare.md").read_text()
    assert "| image | references | lstm | transformer | disagreement |" in markdown
    assert (out / "compare.html").read_text().count("<img ") == 2
    assert (out / "plots" / "compare.png").is_file() and (out / "plots" / "disagreements.png").is_file()


def test_compare_bad_input(cli, two_runs, tmp_path):
    result = cli("caption", "compare", two_runs[0])
    assert result.exit_code == 2 and "at least two runs" in result.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_dlkit": {"group": "llm"}}))
    result = cli("caption", "compare", two_runs[0], other)
    assert result.exit_code == 2 and "is a llm run, not a caption run" in result.stderr


@pytest.mark.parametrize("size", [(30, 300), (64, 64), (300, 60)], ids=["tall", "square", "wide"])
@pytest.mark.parametrize("panels", [1, 5])
def test_the_grid_shows_every_caption_line_below_its_image(tmp_path, monkeypatch, size, panels):
    """The captions of the compare figure stay inside the figure and under the images, whatever the images'
    shape and however many runs add lines."""
    from dlkit.caption import viz

    image = tmp_path / "image.png"
    Image.new("RGB", size, (200, 40, 40)).save(image)
    lines = ["ref: a red square on a grey table next to a window"] + [
        f"run{i}: a red square standing on the grey table by the window (BLEU-4 0.12)" for i in range(6)
    ]
    drawn = []

    def keep(fig, path):  # the figure as save_figure lays it out, before it is closed
        fig.tight_layout()
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        texts = [t for ax in fig.axes for t in (*ax.texts, ax.xaxis.label) if t.get_text()]
        images = [ax.get_window_extent(renderer) for ax in fig.axes if ax.images]
        drawn.append(([t.get_window_extent(renderer) for t in texts], images, fig.bbox))
        return path

    monkeypatch.setattr(viz, "save_figure", keep)
    viz.caption_grid([(str(image), lines)] * panels, tmp_path / "grid.png", "the same test images")
    ((texts, images, page),) = drawn
    assert len(texts) == panels
    assert all(box.y0 >= 0 and box.y1 <= page.y1 for box in texts)  # the last line is on the page
    assert max(box.y1 for box in texts) <= min(box.y0 for box in images) + 4  # under the images, not over them
