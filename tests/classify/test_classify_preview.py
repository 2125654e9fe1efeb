"""`dlkit vit prepare` and `dlkit clip prepare`: class counts per split, the sample grid and the image sizes."""

from __future__ import annotations

import json

from PIL import Image


def image_folder(root, sizes=((20, 10), (30, 40))):
    """train/ and test/ with 3 cats and 2 dogs per split; the dogs are larger."""
    for split in ("train", "test"):
        for name, count, size in (("cat", 3, sizes[0]), ("dog", 2, sizes[1])):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", size, (40 * i, 100, 50)).save(root / split / name / f"{i}.png")
    return root


def test_vit_prepare_counts_classes_per_split_and_draws_the_previews(cli, tmp_path):
    data = image_folder(tmp_path / "pets")
    out = tmp_path / "prep"
    result = cli("--json", "vit", "prepare", "--data", data, "--output-dir", out)
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["class_names"] == ["cat", "dog"]
    assert stats["splits"]["train"]["per_class"] == {"cat": 2, "dog": 1}  # one of each class held out
    assert stats["splits"]["validation (held-out 10% of train)"]["per_class"] == {"cat": 1, "dog": 1}
    assert stats["splits"]["test (test)"]["per_class"] == {"cat": 3, "dog": 2}
    assert (stats["width_min"], stats["width_max"], stats["height_min"], stats["height_max"]) == (20, 30, 10, 40)
    for plot in ("samples.png", "image_sizes.png", "class_counts.png"):
        assert (out / "plots" / plot).stat().st_size > 1000
    assert json.loads((out / "stats.json").read_text()) == stats


def test_clip_prepare_uses_the_prompt_class_names(cli, tmp_path):
    data = tmp_path / "dogs"
    for folder in ("n02085620-Chihuahua", "n02085782-Japanese_spaniel"):
        (data / folder).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16)).save(data / folder / f"{i}.jpg")
    out = tmp_path / "prep"
    result = cli("--json", "clip", "prepare", "--data", data, "--output-dir", out)
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["class_names"] == ["chihuahua", "japanese spaniel"]
    assert stats["splits"] == {"all": {"images": 4, "per_class": {"chihuahua": 2, "japanese spaniel": 2}}}
    assert (out / "plots" / "samples.png").is_file()


def test_prepare_bad_data_is_one_line(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("vit", "prepare", "--data", tmp_path / "empty", "--output-dir", tmp_path / "o")
    assert result.exit_code == 2 and "no class folders" in result.stderr
