"""`llm train --sharding fsdp` on 2 processes (gloo on the CPU): the losses of one process with the same global
batch, half of the parameters on each process, an exported model that plain transformers / PEFT load with the
same logits, and kill -9 + --resume giving the losses of the unbroken run.

full and partial run under torchrun with --sharding fsdp; LoRA over the sharded frozen base runs under
`accelerate launch` with examples/distributed/fsdp.yaml and no --sharding flag, so its sharding comes from the
accelerate FSDP config alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from checks import one_line_error

BIN = Path(sys.executable).parent
FSDP_CONFIG = Path(__file__).parents[2] / "examples" / "distributed" / "fsdp.yaml"
HANG = Path(__file__).with_name("hang_run.py")
# 5 validation examples in batches of 2 on 2 processes: one batch more on one of them unless the eval plan evens
# them out (each forward of a sharded model is a collective)
LLM = [
    "llm",
    "train",
    "--data",
    "builtin:instruct-fa",
    "--limit",
    "40",
    "--val-size",
    "5",
    "--max-length",
    "64",
    "--max-new-tokens",
    "4",
    "--max-steps",
    "4",
    "--eval-every",
    "2",
    "--save-every",
    "2",
    "--log-every",
    "1",
    "--seed",
    "0",
]
# LoRA's dropout masks are drawn per micro-batch, so they depend on how the batch is split: off for the comparison
METHODS = {
    "full": ["--method", "full"],
    "partial": ["--method", "partial"],
    "lora": ["--method", "lora", "--dropout", "0"],
}
ONE = ["--batch-size", "4"]
# the same global batch of 4 on 2 processes; partial also accumulates (FSDP reduce-scatters every micro-batch)
TWO = {
    "full": ["--batch-size", "2"],
    "partial": ["--batch-size", "1", "--grad-accum", "2"],
    "lora": ["--batch-size", "2"],
}


def torchrun(*args: str) -> list[str]:
    return [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", *args]


def launch(command: list[str]) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """method -> the folder of its 2-process sharded run (each run once per module)."""
    done: dict[str, Path] = {}

    def run(method: str) -> Path:
        if method not in done:
            out = tmp_path_factory.mktemp("sharded") / method
            args = [*LLM, *METHODS[method], *TWO[method], "--output-dir", str(out)]
            if method == "lora":
                launch(
                    [
                        str(BIN / "accelerate"),
                        "launch",
                        "--config_file",
                        str(FSDP_CONFIG),
                        "--num_processes",
                        "2",
                        "-m",
                        "dlkit",
                        "-q",
                        *args,
                    ]
                )
            else:
                launch(torchrun("-m", "dlkit", "-q", *args, "--sharding", "fsdp"))
            done[method] = out
        return done[method]

    return run


def history(run: Path) -> list[tuple[str, int, float]]:
    lines = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return [(r["kind"], r["step"], r["loss"] if r["kind"] == "train" else r["val_loss"]) for r in lines]


def resumed_at(run: Path) -> list[int]:
    return [r["resumed_at_step"] for r in json.loads((run / "config.json").read_text())["_dlkit"].get("history", [])]


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def exported_logits(run: Path):
    """Logits of the exported model, loaded the way a user of transformers / PEFT would."""
    import torch
    from transformers import AutoModelForCausalLM

    final = run / "checkpoints" / "final"
    if (final / "adapter_config.json").is_file():  # the base: the builtin's folder (dlkit_llm.json says where)
        from peft import PeftModel

        base = json.loads((final / "dlkit_llm.json").read_text())["base_resolved"]
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(final))
    else:  # a partial run's final folder holds its trained layers: `export --merge` writes the whole model
        if (final / "trained.json").is_file():
            from dlkit.cli import main

            final = run.parent / f"{run.name}-merged"
            assert main(["-q", "llm", "export", "--run", str(run), "--merge", "--out", str(final)]) == 0
        model = AutoModelForCausalLM.from_pretrained(str(final))
    with torch.no_grad():
        return model.eval()(input_ids=torch.arange(1, 40)[None]).logits


@pytest.mark.distributed
@pytest.mark.parametrize("method", list(METHODS))
def test_two_sharded_processes_train_as_one_process(method, sharded, tmp_path):
    from dlkit.cli import main

    one = tmp_path / "one"
    assert main(["-q", *LLM, *METHODS[method], *ONE, "--output-dir", str(one)]) == 0
    two = sharded(method)

    expected, got = history(one), history(two)
    assert [h[:2] for h in got] == [h[:2] for h in expected]
    assert [h[2] for h in got] == pytest.approx([h[2] for h in expected], abs=1e-5)
    whole, half = metrics(one), metrics(two)
    assert (whole["processes"], whole["sharding"], half["processes"], half["sharding"]) == (1, "none", 2, "fsdp")
    assert half["param_memory_mb"] / whole["param_memory_mb"] == pytest.approx(0.5, abs=0.01)
    assert half["trainable_params"] == whole["trainable_params"]
    assert half.get("changed_param_names") == whole.get("changed_param_names")  # gathered on the main process
    assert (two / "samples" / "step_0000004.md").is_file()  # drawn from the gathered model, no deadlock

    import torch

    torch.testing.assert_close(exported_logits(two), exported_logits(one), rtol=0, atol=1e-4)


@pytest.mark.distributed
def _exited(pid: int) -> bool:
    """Gone, or a zombie (its files, and with them its locks, are closed at exit)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_kill_9_then_resume_on_two_processes_gives_the_unbroken_losses(sharded, tmp_path, cli):
    unbroken = sharded("full")
    cut, ready = tmp_path / "cut", tmp_path / "ready"
    args = [*LLM, *METHODS["full"], *TWO["full"], "--sharding", "fsdp", "--output-dir", str(cut)]
    proc = subprocess.Popen(
        torchrun(str(HANG), "3", str(ready), "-q", *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pids = []
    for rank in (0, 1):  # both processes stop after step 3, past the checkpoint of step 2
        while not Path(f"{ready}.{rank}").exists():
            assert proc.poll() is None, "the run ended before step 3"
            time.sleep(0.1)
        pids.append(int(Path(f"{ready}.{rank}").read_text()))
    for pid in [*pids, proc.pid]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    for pid in pids:  # SIGKILL is delivered asynchronously: a rank holds the folder's lock until it has exited
        deadline = time.monotonic() + 60
        while not _exited(pid):
            assert time.monotonic() < deadline, f"rank pid {pid} still running 60 s after SIGKILL"
            time.sleep(0.05)
    assert [h[:2] for h in history(cut)] == [("train", 1), ("train", 2), ("eval", 2), ("train", 3)]
    assert [p.name for p in (cut / "checkpoints").iterdir()] == ["step_0000002"]

    one_line_error(cli(*args, "--resume"), "--resume", "processes 2 -> 1")  # on one process: refused

    launch(torchrun("-m", "dlkit", "-q", *args, "--resume"))
    assert resumed_at(cut) == [2] and history(cut) == history(unbroken)
    assert metrics(cut)["final"] == metrics(unbroken)["final"]


# -- one process, in this one: the other groups' full fine-tuning, and resume ---------------------------------

GROUPS = {
    "vit": [
        "vit",
        "train",
        "--method",
        "full",
        "--batch-size",
        "8",
        "--max-train-samples",
        "32",
        "--max-eval-samples",
        "16",
    ],
    "adapter": [
        "adapter",
        "train",
        "--method",
        "full",
        "--batch-size",
        "8",
        "--max-train-samples",
        "32",
        "--max-eval-samples",
        "16",
    ],
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


def saved_tensors(run: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted((run / "checkpoints" / "final").rglob("*.safetensors"))
    return {f"{f.name}:{k}": v for f in files for k, v in load_file(str(f)).items()}


@pytest.mark.parametrize("group", list(GROUPS))
def test_full_fine_tuning_sharded_trains_and_saves_as_unsharded(group, tmp_path):
    """On one process FSDP shards nothing, but runs all of its path: blocks found, the step through the root
    module, sharded checkpoints, and the final model gathered into the group's own files."""
    import torch

    from dlkit.cli import main

    args = [*GROUPS[group], "--max-steps", "3", "--eval-every", "3", "--log-every", "1", "--seed", "0"]
    assert main(["-q", *args, "--output-dir", str(tmp_path / "plain")]) == 0
    assert main(["-q", *args, "--sharding", "fsdp", "--output-dir", str(tmp_path / "fsdp")]) == 0
    plain, fsdp = tmp_path / "plain", tmp_path / "fsdp"
    assert [h[:2] for h in history(fsdp)] == [h[:2] for h in history(plain)]
    assert [h[2] for h in history(fsdp)] == pytest.approx([h[2] for h in history(plain)], abs=1e-5)
    assert (metrics(fsdp)["sharding"], metrics(plain)["sharding"]) == ("fsdp", "none")
    assert (fsdp / "checkpoints" / "step_0000003" / "shards" / ".metadata").is_file()
    expected, got = saved_tensors(plain), saved_tensors(fsdp)
    assert expected and got.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-5)


def test_sharded_resume_is_exact_also_with_cpu_offload_turned_on(tmp_path):
    """A run whose last checkpoint is gone resumes from the one before it and logs the same losses again;
    --cpu-offload may change on resume (where the shards live, not what they hold)."""
    import shutil

    from dlkit.cli import main

    run = tmp_path / "run"
    args = [*LLM, *METHODS["lora"], *ONE, "--sharding", "fsdp", "--output-dir", str(run)]
    assert main(["-q", *args]) == 0
    whole = history(run)
    shutil.rmtree(run / "checkpoints" / "step_0000004")
    assert main(["-q", *args, "--cpu-offload", "--resume"]) == 0
    assert resumed_at(run) == [2] and history(run) == whole


def test_bf16_computes_in_bf16_and_keeps_fp32_weights(tmp_path):
    from safetensors.torch import load_file

    from dlkit.cli import main

    args = [*LLM, *METHODS["full"], *ONE, "--sharding", "fsdp"]
    assert main(["-q", *args, "--output-dir", str(tmp_path / "fp32")]) == 0
    assert main(["-q", *args, "--precision", "bf16", "--output-dir", str(tmp_path / "bf16")]) == 0
    fp32, bf16 = [h[2] for h in history(tmp_path / "fp32")], [h[2] for h in history(tmp_path / "bf16")]
    assert bf16 == pytest.approx(fp32, rel=1e-2) and bf16 != pytest.approx(fp32, rel=1e-6, abs=0)
    weights = load_file(str(tmp_path / "bf16" / "checkpoints" / "final" / "model.safetensors"))
    assert {str(w.dtype) for w in weights.values()} == {"torch.float32"}


def test_a_sharded_checkpoint_holds_the_trained_shards_and_refuses_another_base(tmp_path, cli):
    """A sharded LoRA checkpoint holds the adapter's shards (the frozen base is not saved) and the base's
    fingerprint: a resume on other base weights is one line, as without sharding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dlkit.builtin.tiny_lm import tiny_llama
    from dlkit.cli import main

    base = tmp_path / "base"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama())
    model.save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_llama()).save_pretrained(base)
    run = tmp_path / "run"
    args = [*LLM, *METHODS["lora"], *ONE, "--sharding", "fsdp", "--model", str(base), "--output-dir", str(run)]
    assert main(["-q", *args, "--max-steps", "2"]) == 0
    ckpt = run / "checkpoints" / "step_0000002"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["model"]["source"] == str(base) and state["model"]["frozen_fingerprint"]
    from torch.distributed.checkpoint import FileSystemReader

    saved = FileSystemReader(str(ckpt / "shards")).read_metadata().state_dict_metadata
    weights = [k for k in saved if k.startswith("model.")]
    assert weights and all("lora_" in k for k in weights)  # the adapter (and its optimizer state), not the base
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.add_(0.01)
    model.save_pretrained(base)
    one_line_error(cli(*args, "--resume"), "--resume: the frozen weights of", "are not those")
