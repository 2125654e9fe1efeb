"""Zero-shot machinery on builtin:tiny-clip and small generated folders: template sets and ensembling
(against open_clip's own classifier builder), class names, the feature cache, reports and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from checks import one_line_error

from dlkit.clip.data import clean_class_name, load_split
from dlkit.clip.evaluate import class_embeddings
from dlkit.clip.features import image_features
from dlkit.clip.models import build_clip
from dlkit.clip.templates import resolve_templates
from dlkit.core.errors import ConfigError


@pytest.fixture(scope="module")
def tiny():
    return build_clip("builtin:tiny-clip")


def test_class_names_are_cleaned() -> None:
    assert clean_class_name("n02085620-Chihuahua") == "chihuahua"
    assert clean_class_name("n02089078-black-and-tan_coonhound") == "black and tan coonhound"
    assert clean_class_name("001.Black_footed_Albatross") == "black footed albatross"
    assert clean_class_name("3_cat") == "cat"


def test_template_sets_files_and_literals(tmp_path: Path) -> None:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    imagenet = resolve_templates(["imagenet80"])
    assert len(imagenet) == len(OPENAI_IMAGENET_TEMPLATES) == 80
    assert imagenet[0].format("dog") == OPENAI_IMAGENET_TEMPLATES[0]("dog")
    file = tmp_path / "t.txt"
    file.write_text("# comment\nart of a {}.\n\na {} in the wild.\n")
    combined = resolve_templates(["simple", str(file), "a sketch of a {}."])
    assert combined == ["a photo of a {}.", "art of a {}.", "a {} in the wild.", "a sketch of a {}."]
    assert len(resolve_templates(["dogs"])) >= 5


def test_template_without_braces_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no {} for the class name"):
        resolve_templates(["a photo of a dog"])
    file = tmp_path / "bad.txt"
    file.write_text("a photo of a {}.\nno placeholder here\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2"):
        resolve_templates([str(file)])


def test_ensemble_matches_open_clip_zero_shot_classifier(tiny) -> None:
    """Averaging normalised text embeddings per class, as open_clip's build_zero_shot_classifier does."""
    from open_clip import build_zero_shot_classifier

    classes, templates = ["circle", "square", "star"], resolve_templates(["simple", "a drawing of a {}."])
    ours = class_embeddings(tiny, classes, templates)  # (C, D)
    reference = build_zero_shot_classifier(tiny.model, tiny.tokenizer, classes, templates)  # (D, C)
    torch.testing.assert_close(ours, reference.T, atol=1e-5, rtol=1e-5)


def test_image_features_are_cached_and_reused(tiny, colour_folder: Path) -> None:
    images = load_split(str(colour_folder))
    assert images.classes == ["red thing", "green thing", "blue thing"]
    first = image_features(tiny, images, batch_size=5)
    second = image_features(tiny, images, batch_size=5)
    assert not first.cached and second.cached
    torch.testing.assert_close(first.features, second.features)
    assert first.features.shape == (12, 32) and first.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    (colour_folder / "n00000001-Red_Thing" / "new.png").write_bytes(
        (colour_folder / "n00000001-Red_Thing" / "000.png").read_bytes()
    )
    assert not image_features(tiny, load_split(str(colour_folder)), batch_size=5).cached  # new file, new key


def test_zeroshot_writes_reports_and_counts_undecodable(cli, colour_folder: Path, tmp_path: Path) -> None:
    (colour_folder / "n00000002-green_thing" / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "zs"
    result = cli(
        "--json",
        "clip",
        "zeroshot",
        "--data",
        colour_folder,
        "--templates",
        "simple",
        "--templates",
        "a {} on a plain background.",
        "--output-dir",
        out,
    )
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["skipped_items"] == 1 and metrics["num_images"] == 12 and metrics["num_templates"] == 2
    assert 0.0 <= metrics["top1"] <= metrics["top5"] == 1.0  # 3 classes: top-5 covers all
    assert {"class", "f1", "support"} <= set(metrics["worst_classes"][0])
    for name in ("report.csv", "report.json", "plots/confusion_matrix.png", "samples/predictions.csv"):
        assert (out / name).is_file(), name
    header, *rows = (out / "report.csv").read_text().splitlines()
    assert header == "class,precision,recall,f1,support" and rows[0].startswith("red thing,")


def test_templates_compares_sets_on_one_encoding(cli, colour_folder: Path, tmp_path: Path) -> None:
    file = tmp_path / "mine.txt"
    file.write_text("a {} square.\n")
    result = cli(
        "--json",
        "clip",
        "templates",
        "--data",
        colour_folder,
        "--sets",
        f"simple,imagenet80,{file}",
        "--output-dir",
        tmp_path / "t",
    )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [(r["set"], r["templates"]) for r in rows] == [("simple", 1), ("imagenet80", 80), ("mine.txt", 1)]
    assert result.stderr.count("encoded") <= 1  # images encoded at most once for all sets


def test_fix_class_scores_candidates_for_one_class(cli, colour_folder: Path, tmp_path: Path) -> None:
    candidates = tmp_path / "c.txt"
    candidates.write_text("a {}.\na photo of a red {}.\na blurry {}.\n")
    result = cli(
        "--json",
        "clip",
        "fix-class",
        "--data",
        colour_folder,
        "--class",
        "red thing",
        "--candidates",
        candidates,
        "--output-dir",
        tmp_path / "f",
    )
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["class"] == "red thing" and len(metrics["rows"]) == 4
    top = max(r["class_f1"] for r in metrics["rows"][1:])
    assert metrics["best"] is None if top == 0 else metrics["best"]["class_f1"] == top
    assert (tmp_path / "f" / "candidates.csv").is_file()


def candidate(template: str, class_f1: float, top1: float) -> dict:
    return {"template": template, "class_f1": class_f1, "top1": top1}


def test_fix_class_names_no_best_when_every_candidate_scores_f1_0() -> None:
    from dlkit.clip.evaluate import pick_best

    best, verdict = pick_best([candidate("a {}.", 0.0, 0.5), candidate("a red {}.", 0.0, 0.25)], "red thing")
    assert best is None and verdict == "no best template: every candidate scores F1 0 on 'red thing'"
    best, verdict = pick_best([candidate("a {}.", 0.5, 0.5), candidate("a red {}.", 0.5, 0.5)], "red thing")
    assert best is None and verdict.startswith("no best template: 2 candidates tie at F1 0.5")
    best, verdict = pick_best([candidate("a {}.", 0.5, 0.5), candidate("a red {}.", 0.5, 0.75)], "red thing")
    assert best["template"] == "a red {}." and verdict == "best: a red {}."


# -- bad input: one line, exit 2 -------------------------------------------------------------------


def test_unknown_model_suggests_close_names(cli, tmp_path: Path) -> None:
    result = cli("clip", "zeroshot", "--model", "convnext_bse", "--output-dir", tmp_path / "x")
    one_line_error(result, "convnext_bse", "convnext_base")


def test_pretrained_tag_offline_fails_fast(cli, tmp_path: Path) -> None:
    result = cli("clip", "zeroshot", "--model", "RN50", "--pretrained", "openai", "--output-dir", tmp_path / "x")
    one_line_error(result, "--pretrained openai", "offline", "--pretrained none")
    unknown = cli("clip", "zeroshot", "--model", "RN50", "--pretrained", "laion2b", "--output-dir", tmp_path / "y")
    one_line_error(unknown, "laion2b", "openai")


def test_template_without_braces_exits_2(cli, colour_folder: Path, tmp_path: Path) -> None:
    result = cli("clip", "zeroshot", "--data", colour_folder, "--templates", "a photo", "--output-dir", tmp_path / "x")
    one_line_error(result, "'a photo'", "{}")


def test_fewer_than_two_classes(cli, tmp_path: Path) -> None:
    from clip_helpers import make_image_folder

    folder = make_image_folder(tmp_path / "one", {"cat": 3})
    result = cli("clip", "zeroshot", "--data", folder, "--output-dir", tmp_path / "x")
    one_line_error(result, "1 class", "at least 2 classes")


def test_classnames_file_with_wrong_count(cli, colour_folder: Path, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("red\ngreen\n")
    result = cli("clip", "zeroshot", "--data", colour_folder, "--classnames", names, "--output-dir", tmp_path / "x")
    one_line_error(result, "2 names for 3 class folders")
    names.write_text("scarlet\nlime\nnavy\n")
    ok = cli(
        "--json", "clip", "zeroshot", "--data", colour_folder, "--classnames", names, "--output-dir", tmp_path / "y"
    )
    assert ok.exit_code == 0 and json.loads(ok.stdout)["worst_classes"][0]["class"] in ("scarlet", "lime", "navy")


def test_class_not_in_dataset(cli, colour_folder: Path, tmp_path: Path) -> None:
    candidates = tmp_path / "c.txt"
    candidates.write_text("a {}.\n")
    result = cli(
        "clip",
        "fix-class",
        "--data",
        colour_folder,
        "--class",
        "red thin",
        "--candidates",
        candidates,
        "--output-dir",
        tmp_path / "x",
    )
    one_line_error(result, "'red thin'", "red thing")


def test_empty_folder(cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = cli("clip", "zeroshot", "--data", tmp_path / "empty", "--output-dir", tmp_path / "x")
    one_line_error(result, "no class folders")
    (tmp_path / "hollow" / "cat").mkdir(parents=True)
    (tmp_path / "hollow" / "dog").mkdir(parents=True)
    result = cli("clip", "zeroshot", "--data", tmp_path / "hollow", "--output-dir", tmp_path / "y")
    one_line_error(result, "hold no images")


def test_all_images_undecodable(cli, tmp_path: Path) -> None:
    for name in ("cat", "dog"):
        (tmp_path / "bad" / name).mkdir(parents=True)
        (tmp_path / "bad" / name / "x.png").write_bytes(b"garbage")
    result = cli("clip", "zeroshot", "--data", tmp_path / "bad", "--output-dir", tmp_path / "x")
    one_line_error(result, "none of the 2 images could be decoded")


def test_retrieve_with_a_model_ranks_and_draws(cli, colour_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "ret"
    result = cli(
        "--json",
        "clip",
        "retrieve",
        "--model",
        "builtin:tiny-clip",
        "--images",
        colour_folder,
        "--query",
        "a red square",
        "-k",
        "4",
        "--output",
        out,
    )
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    scores = [r["score"] for r in found["results"]]
    assert [r["rank"] for r in found["results"]] == [1, 2, 3, 4] and scores == sorted(scores, reverse=True)
    assert found["num_images"] == 12 and (out / "grid.png").is_file() and (out / "results.json").is_file()
    both = cli(
        "clip", "retrieve", "--model", "builtin:tiny-clip", "--run", tmp_path, "--images", colour_folder, "--query", "x"
    )
    one_line_error(both, "either --run", "--model")


def test_train_refuses_data_without_captions_and_bad_sizes(cli, tmp_path: Path) -> None:
    result = cli("clip", "train", "--data", "builtin:shape-classes", "--output-dir", tmp_path / "x")
    one_line_error(result, "builtin:shape-classes", "not an image-caption dataset")
    result = cli(
        "clip", "train", "--image-encoder", "resnet-small", "--image-size", "48", "--output-dir", tmp_path / "y"
    )
    one_line_error(result, "--image-size 48", "multiple of 32")
