"""CoOp and the linear probe select their model on a validation slice of the train split and score the test
split once at the end; an open_clip architecture without --pretrained gets its default weights, or says in
one line that its weights are random."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clip_helpers import make_image_folder

from dlkit.core.outputs import MARKER


@pytest.mark.parametrize("command", ["probe", "coop"])
def test_model_selection_never_sees_the_test_images(cli, tmp_path: Path, command: str) -> None:
    classes = {"red": 6, "green": 6, "blue": 6}
    data = tmp_path / "data"
    make_image_folder(data / "train", classes)
    make_image_folder(data / "test", {name: 3 for name in classes})
    run = tmp_path / command
    result = cli(
        "--json", "clip", command, "--data", data, "--epochs", "2", "--val-fraction", "0.34", "--output-dir", run
    )
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    ids = json.loads((run / "splits.json").read_text())
    assert metrics["val_images"] == len(ids["validation"]) == 6 and metrics["test_images"] == len(ids["test"]) == 9
    assert len(ids["train"]) == 12 and not set(ids["train"]) & set(ids["validation"])
    assert all(Path(p).parts[-3] == "train" for p in ids["train"] + ids["validation"])
    assert all(Path(p).parts[-3] == "test" for p in ids["test"])
    recorded = json.loads((run / "config.json").read_text())["_dlkit"]["splits"]
    assert recorded["sizes"] == {"train": 12, "validation": 6, "test": 9}
    assert "held out for validation" in recorded["rule"]
    # the folder is marked as this command's, so the same command may replace it (it was marked `clip train`)
    assert json.loads((run / MARKER).read_text())["command"] == command
    again = cli(
        "--json",
        "clip",
        command,
        "--data",
        data,
        "--epochs",
        "1",
        "--val-fraction",
        "0.34",
        "--output-dir",
        run,
        "--overwrite",
    )
    assert again.exit_code == 0, again.stderr


class _Built(Exception):
    """Raised by the stand-in for open_clip's factory: what build_clip asked for, without building it."""


@pytest.fixture
def factory(monkeypatch):
    import dlkit.clip.models as models

    def create(name, pretrained, display, key, seed):
        raise _Built(pretrained)

    monkeypatch.setattr(models, "_create", create)
    return models


def test_an_architecture_without_pretrained_gets_its_default_tag(factory, monkeypatch) -> None:
    import open_clip

    monkeypatch.setattr(factory, "_check_tag", lambda name, tag: None)  # as on a machine with the weights
    with pytest.raises(_Built) as built:
        factory.build_clip("convnext_base")
    assert built.value.args[0] == open_clip.list_pretrained_tags_by_model("convnext_base")[0]


def test_offline_default_or_none_says_the_weights_are_random(factory, capsys) -> None:
    for pretrained in ("default", "none"):
        with pytest.raises(_Built) as built:
            factory.build_clip("convnext_base", pretrained)
        assert built.value.args[0] is None
        lines = [line for line in capsys.readouterr().err.splitlines() if "RANDOM weights" in line]
        assert len(lines) == 1 and "--model convnext_base" in lines[0]


def test_the_default_of_every_clip_command_is_the_default_tag(cli) -> None:
    from dlkit.clip.config import ZeroShotConfig

    assert ZeroShotConfig().pretrained == "default"
    for command in ("zeroshot", "fix-class", "retrieve"):
        assert "first tag" in " ".join(cli("clip", command, "--help").stdout.replace("│", " ").split())


def test_zeroshot_names_the_split_it_scored_and_its_size(cli, tmp_path: Path) -> None:
    classes = {"red": 3, "green": 3, "blue": 3}
    make_image_folder(tmp_path / "breeds", classes)  # no split folders: every image is scored, as "all"
    make_image_folder(tmp_path / "split" / "train", classes)
    make_image_folder(tmp_path / "split" / "test", {name: 2 for name in classes})
    make_image_folder(tmp_path / "dogs" / "test", {name: 1 for name in classes})  # a test folder given alone
    for data, split, size in [
        (tmp_path / "breeds", "all", 9),
        (tmp_path / "split", "test", 6),
        (tmp_path / "dogs" / "test", "test", 3),
    ]:
        for command in ("zeroshot", "templates"):
            result = cli("--json", "clip", command, "--data", data, "--output-dir", tmp_path / f"{command}-{size}")
            assert result.exit_code == 0, result.stderr
            metrics = json.loads(result.stdout)
            assert (metrics["split"], metrics["split_size"]) == (split, size), (command, data)
