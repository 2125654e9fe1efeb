"""A vit run stopped and resumed trains exactly like an uninterrupted one (augmentation and LoRA dropout on)."""

from __future__ import annotations

from dlkit.core.run import Run
from dlkit.vit.config import VitConfig
from dlkit.vit.task import train


def losses(run_dir) -> list[float]:
    return [r["loss"] for r in Run(run_dir, "vit").history("train")]


def test_resume_matches_uninterrupted_run(tmp_path):
    common = dict(
        method="lora",
        augment=True,
        max_train_samples=96,
        max_eval_samples=16,
        batch_size=16,
        log_every=1,
        save_every=3,
        eval_every=3,
        scheduler="constant",
        warmup=0.0,
    )
    train(VitConfig(output_dir=str(tmp_path / "whole"), max_steps=8, **common))
    train(VitConfig(output_dir=str(tmp_path / "cut"), max_steps=3, **common))
    train(VitConfig(output_dir=str(tmp_path / "cut"), max_steps=8, resume=True, **common))
    whole, resumed = losses(tmp_path / "whole"), losses(tmp_path / "cut")
    assert len(whole) == len(resumed) == 8
    assert resumed == whole
