"""`dlkit caption compare RUN...`: the same test images captioned by each run, side by side."""

from __future__ import annotations

import json

import pytest
from PIL import Image

FAST = ["--image-size", "32", "--embed-dim", "16", "--hidden-dim", "32", "--attention-dim", "16",
        "--num-layers", "1", "--num-heads", "2", "--batch-size", "16", "--save-every", "100000",
        "--eval-every", "100000", "--max-steps", "2", "--beam-size", "1", "-q"]


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
        assert main(["caption", "train", "--arch", arch, "--data", str(root / "data"), *FAST,
                     "--output-dir", str(root / arch)]) == 0
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
