"""Every group's `train` under `torchrun --nproc_per_node 2` (DDP, gloo on CPU), on builtin data for two
steps: it exits 0, both processes trained (`processes: 2`), stdout holds one JSON document, and the
final eval combined over the two processes equals one process's eval of the same saved weights.

The single-process reference runs the group's own train command with --resume on the finished run, with
the engine's `fit` replaced by an eval of the last checkpoint: the group builds its task as it does for
training, and the engine's eval loader and the task's `evaluate` score the run's validation split.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

COMMON = ["--max-steps", "2", "--seed", "0"]
GROUPS = {
    "charrnn": [
        "charrnn",
        "train",
        "--hidden-size",
        "16",
        "--num-layers",
        "1",
        "--block-size",
        "16",
        "--batch-size",
        "8",
        "--max-val-blocks",
        "64",
        "--sample-chars",
        "0",
    ],
    "llm": [
        "llm",
        "train",
        "--data",
        "builtin:instruct-fa",
        "--limit",
        "40",
        "--batch-size",
        "4",
        "--max-length",
        "64",
        "--max-new-tokens",
        "4",
    ],
    "caption-attention": [
        "caption",
        "train",
        "--arch",
        "attention",
        "--image-size",
        "32",
        "--embed-dim",
        "16",
        "--hidden-dim",
        "32",
        "--attention-dim",
        "16",
        "--batch-size",
        "8",
    ],
    "caption-vit-gpt2": ["caption", "train", "--arch", "vit-gpt2", "--batch-size", "4", "--max-len", "8"],
    "clip": [
        "clip",
        "train",
        "--image-encoder",
        "resnet-small",
        "--embed-dim",
        "16",
        "--text-width",
        "16",
        "--text-layers",
        "1",
        "--text-heads",
        "2",
        "--context-length",
        "16",
        "--batch-size",
        "8",
    ],
    "vit": ["vit", "train", "--batch-size", "8", "--max-train-samples", "32", "--max-eval-samples", "16"],
    "adapter": ["adapter", "train", "--batch-size", "8", "--max-train-samples", "32", "--max-eval-samples", "16"],
    "qa": [
        "qa",
        "train",
        "--head",
        "linear",
        "--max-length",
        "32",
        "--doc-stride",
        "8",
        "--batch-size",
        "8",
        "--max-eval-examples",
        "16",
    ],
}


class Evaluated(Exception):
    """Carries the reference metrics out of the group's train command."""


def single_process_eval(task, cfg, run):
    """What the engine's final eval computes, on one process, from the run's last checkpoint."""
    import torch
    from accelerate.utils import set_seed
    from torch.utils.data import default_collate

    from dlkit.core import engine

    accel = engine.build_accelerator(cfg, run)
    set_seed(cfg.seed)
    model = task.build_model()
    _, val_set = task.datasets()
    engine.train_in_fp32(model, cfg.precision)
    trained = engine.TrainedTensors.of(model, task.trained_names(model), cfg.model)
    trained.load(run.checkpoints()[-1] / engine.MODEL_FILE)
    model = accel.prepare(model)
    loader = engine.eval_loader(val_set, getattr(task, "collate", default_collate), cfg.batch_size, accel)
    model.eval()
    with torch.no_grad():
        raise Evaluated(task.evaluate(model, loader, accel))


@pytest.mark.distributed
@pytest.mark.parametrize("name", list(GROUPS))
def test_train_on_two_processes(name, tmp_path, monkeypatch):
    args = [*GROUPS[name], *COMMON, "--output-dir", str(tmp_path / "run")]
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "dlkit", "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout)  # one document: only the main process prints
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 2 and metrics["status"] == "finished"
    assert printed["final"] == metrics["final"]

    from dlkit.cli import main
    from dlkit.core import engine

    monkeypatch.setattr(engine, "fit", single_process_eval)
    with pytest.raises(Evaluated) as reference:
        main(["-q", *args, "--resume"])
    expected = {k: v for k, v in reference.value.args[0].items() if isinstance(v, (int, float))}
    assert expected and "val_loss" in expected
    assert {k: metrics["final"][k] for k in expected} == pytest.approx(expected, rel=1e-5)


# -- accelerate launch ------------------------------------------------------------------------------

ACCELERATE = Path(sys.executable).with_name("accelerate")
EXAMPLES = Path(__file__).parents[2] / "examples" / "distributed"
CHARRNN = [
    "-m",
    "dlkit",
    "charrnn",
    "train",
    "--hidden-size",
    "8",
    "--num-layers",
    "1",
    "--block-size",
    "8",
    "--batch-size",
    "8",
    "--max-val-blocks",
    "16",
    "--sample-chars",
    "0",
    "--max-steps",
    "2",
]


def launched(args: list[str], out: Path) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([*args, "--output-dir", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads((out / "metrics.json").read_text())


@pytest.mark.distributed
def test_accelerate_launch_on_cpu_without_multi_gpu_warns_with_the_command_that_starts_two(tmp_path):
    proc, metrics = launched([str(ACCELERATE), "launch", "--num_processes", "2", *CHARRNN], tmp_path / "one")
    assert metrics["processes"] == 1
    warning = [line for line in proc.stderr.splitlines() if "asked for 2 processes but started 1" in line]
    assert len(warning) == 1, proc.stderr[-2000:]
    command = warning[0].split("for 2 processes run: ")[1]
    assert command.startswith("accelerate launch --multi_gpu --num_processes 2 -m dlkit charrnn train")
    _, metrics = launched([str(ACCELERATE), *command.split()[1:]], tmp_path / "two")  # the command, as printed
    assert metrics["processes"] == 2


@pytest.mark.distributed
def test_the_ddp_example_config_runs_two_processes_on_cpu(tmp_path):
    proc, metrics = launched(
        [
            str(ACCELERATE),
            "launch",
            "--config_file",
            str(EXAMPLES / "ddp.yaml"),
            "--num_processes",
            "2",
            *CHARRNN,
            "--json",
        ],
        tmp_path / "run",
    )
    assert metrics["processes"] == 2 and json.loads(proc.stdout)["steps"] == 2
    assert "warning: accelerate launch" not in proc.stderr
