"""Tied weights go through Accelerate's checkpoints stored once ("Removed shared tensor"); a resumed run
must still be the same run: identical losses after a restart from a mid-run checkpoint (with dropout)."""

import json
import shutil

import pytest

from dlkit.charrnn.config import CharRNNConfig
from dlkit.charrnn.task import train
from dlkit.core.config import load_config


def run(out, arch, resume=False):
    return train(
        load_config(
            CharRNNConfig,
            None,
            {
                "data": "builtin:text",
                "arch": arch,
                "output_dir": str(out),
                "resume": resume,
                "hidden_size": 16,
                "num_layers": 1,
                "num_heads": 2,
                "block_size": 16,
                "batch_size": 8,
                "max_steps": 12,
                "save_every": 6,
                "eval_every": 6,
                "log_every": 1,
                "dropout": 0.1,
                "sample_chars": 10,
                "blocks_per_epoch": 40,
            },
        )
    )


def losses(out):
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    return [r["loss"] for r in history if r["kind"] == "train"]


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_resume_from_a_checkpoint_repeats_the_same_losses(tmp_path, arch):
    run(tmp_path / "whole", arch)
    run(tmp_path / "cut", arch)
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "step_0000012")  # as if killed after step 6's checkpoint
    run(tmp_path / "cut", arch, resume=True)
    assert len(losses(tmp_path / "whole")) == 12
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
