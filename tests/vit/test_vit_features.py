"""The frozen front (linear: everything before the classifier; last-block: every block but the last) runs once:
training on its cached outputs gives the losses of running it on every batch, with dropout on in the model."""

from __future__ import annotations

import json
import shutil

import pytest

from dlkit.core.run import Run
from dlkit.vit.config import VitConfig
from dlkit.vit.methods import METHODS
from dlkit.vit.models import model_folder
from dlkit.vit.task import train

SMALL = [
    "--max-train-samples",
    "32",
    "--max-eval-samples",
    "16",
    "--batch-size",
    "8",
    "--max-steps",
    "5",
    "--save-every",
    "100000",
    "--eval-every",
    "2",
    "--warmup",
    "0",
]


@pytest.fixture(scope="module")
def with_dropout(tmp_path_factory):
    """builtin:tiny-vit and builtin:tiny-deit with dropout 0.1 in every block (the builtins have none)."""
    folders = {}
    for name in ("tiny-vit", "tiny-deit"):
        folder = tmp_path_factory.mktemp(name)
        shutil.copytree(model_folder(f"builtin:{name}"), folder, dirs_exist_ok=True)
        config = json.loads((folder / "config.json").read_text())
        config.update(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
        (folder / "config.json").write_text(json.dumps(config))
        folders[name] = folder
    return folders


FRONTED = [name for name, method in METHODS.items() if method.front is not None]  # linear, last-block


@pytest.mark.parametrize("model,method", [*[("tiny-vit", m) for m in FRONTED], ("tiny-deit", "last-block")])
def test_cached_front_gives_the_uncached_losses(cached_and_uncached, with_dropout, model, method):
    runs = cached_and_uncached("vit", "train", "--model", with_dropout[model], "--method", method, *SMALL, steps=5)
    assert "runs once: features of 32 + 16 examples" in runs["cached"].stderr
    # the checkpoint holds the model's state, never the features
    sizes = [sum(f.stat().st_size for f in (r.dir / "checkpoints").rglob("*.safetensors")) for r in runs.values()]
    assert sizes[0] == sizes[1]


def test_features_that_do_not_fit_in_memory_are_mapped_from_disk(
    cached_and_uncached, with_dropout, tmp_path, monkeypatch
):
    monkeypatch.setenv("DLKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLKIT_FEATURE_MEMORY_MB", "0")
    runs = cached_and_uncached(
        "vit", "train", "--model", with_dropout["tiny-vit"], "--method", "last-block", *SMALL, steps=5
    )
    assert "mapped from a file" in runs["cached"].stderr
    assert not list((tmp_path / "cache" / "features").iterdir())  # the file's name was removed at once


def test_augmented_images_and_trained_fronts_are_not_cached(cli, tmp_path):
    for name, args in {"augment": ["--method", "linear", "--augment"], "lora": ["--method", "lora"]}.items():
        result = cli("vit", "train", *args, *SMALL, "--output-dir", tmp_path / name)
        assert result.exit_code == 0, result.stderr
        assert not json.loads((tmp_path / name / "metrics.json").read_text())["cached_features"]
        assert "runs once" not in result.stderr


def test_resume_on_cached_features_matches_uninterrupted_run(tmp_path, with_dropout):
    common = dict(
        model=str(with_dropout["tiny-vit"]),
        method="last-block",
        max_train_samples=16,
        max_eval_samples=8,
        batch_size=8,
        log_every=1,
        save_every=3,
        eval_every=3,
        warmup=0.0,
        scheduler="constant",
    )
    train(VitConfig(output_dir=str(tmp_path / "whole"), max_steps=7, **common))
    train(VitConfig(output_dir=str(tmp_path / "cut"), max_steps=3, **common))
    metrics = train(VitConfig(output_dir=str(tmp_path / "cut"), max_steps=7, resume=True, **common))
    assert metrics["cached_features"]

    def losses(run_dir) -> list[float]:
        return [r["loss"] for r in Run(run_dir, "vit").history("train")]

    assert len(losses(tmp_path / "cut")) == 7
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
