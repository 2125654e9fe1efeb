"""Runs of the groups whose models are dlkit's own modules (hand-written adapters, char-RNNs) travel too: a run
copied to a new folder, with an empty dlkit cache (another machine: builtins are rebuilt), gives the same
predictions and samples as where it was trained."""

from __future__ import annotations

import json
import shutil

import pytest

TRAIN = {
    "adapter": [
        "adapter",
        "train",
        "--method",
        "adapter",
        "--max-train-samples",
        "64",
        "--max-eval-samples",
        "32",
        "--epochs",
        "1",
    ],
    "charrnn": ["charrnn", "train", "--arch", "lstm", "--max-steps", "3", "--batch-size", "8"],
}
USE = {
    "adapter": ["adapter", "predict", "a good film", "a bad film", "--json"],
    "charrnn": ["charrnn", "sample", "--num-chars", "40", "--seed", "3", "--json"],
}


@pytest.mark.parametrize("group", sorted(TRAIN))
def test_run_copied_to_another_machine_gives_the_same_outputs(cli, tmp_path, monkeypatch, group):
    monkeypatch.setenv("DLKIT_CACHE", str(tmp_path / "cache-a"))
    run = tmp_path / "run"
    trained = cli(*TRAIN[group], "--output-dir", run)
    assert trained.exit_code == 0, trained.stderr
    here = cli(*USE[group][:2], "--run", run, *USE[group][2:])
    assert here.exit_code == 0, here.stderr

    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    shutil.rmtree(tmp_path / "cache-a")
    monkeypatch.setenv("DLKIT_CACHE", str(tmp_path / "cache-b"))
    there = cli(*USE[group][:2], "--run", moved, *USE[group][2:])
    assert there.exit_code == 0, there.stderr
    outputs = [json.loads(r.stdout) for r in (here, there)]
    for out in outputs:
        if isinstance(out, dict):
            out.pop("run", None)  # the folder it was read from
    assert outputs[0] == outputs[1]
