"""`dlkit llm plan` against the peak memory `dlkit llm train` really reaches, on random-init Llama models of
~10M to ~500M parameters (the builtin tiny-llama's tokenizer, so the vocabulary is 2,000).

Each case trains in its own process on builtin:instruct packed into full rows of --max-length tokens. Measured:
on a CPU the resident set's peak during training above the process once its data is ready (the peak is reset
with /proc/self/clear_refs after the model is built, so loading does not count, and read before the final
model is written); on a GPU torch.cuda.max_memory_allocated over the same window. Predicted: `dlkit llm plan`
with the same settings, from the folder's config.json. Prints one JSON object, one row per case.

    python benchmarks/plan_vs_measured.py [--cases 10m-full,100m-full,500m-lora] [--steps 3]

Keep the cases within the machine: 500m-lora holds ~2 GiB of fp32 weights; 100m-full ~1.7 GiB of weights,
gradients and AdamW states; the gemma2-2b cases are for a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Llama shapes: (hidden, intermediate, layers, heads, kv heads); gemma2-2b: Gemma-2-2B's published config stored in
# bf16 (benchmarks/real_size.py), for a GPU (benchmarks/gpu_check.sh)
SHAPES = {"10m": (256, 1024, 10, 8, 4), "100m": (768, 3072, 12, 12, 4), "500m": (1536, 4096, 20, 16, 8)}
CASES = {  # name: shape and `llm train` settings
    "10m-full": {"shape": "10m", "method": "full", "batch_size": 4, "max_length": 256},
    "10m-qlora": {"shape": "10m", "method": "lora", "quantize": "4bit", "batch_size": 4, "max_length": 256},
    "100m-full": {"shape": "100m", "method": "full", "batch_size": 4, "max_length": 256},
    "100m-lora": {"shape": "100m", "method": "lora", "batch_size": 8, "max_length": 256},
    "500m-lora": {"shape": "500m", "method": "lora", "batch_size": 4, "max_length": 256},
    "500m-partial": {"shape": "500m", "method": "partial", "batch_size": 2, "max_length": 256},
    "gemma2-2b-lora-bf16": {
        "shape": "gemma2-2b",
        "method": "lora",
        "precision": "bf16",
        "batch_size": 4,
        "max_length": 512,
    },
    "gemma2-2b-qlora": {
        "shape": "gemma2-2b",
        "method": "lora",
        "quantize": "4bit",
        "precision": "bf16",
        "batch_size": 4,
        "max_length": 512,
    },
}


def model_folder(root: Path, name: str) -> Path:
    """A random-init model of the case's shape saved under `root`: Llama shapes with tiny-llama's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from dlkit.builtin.tiny_lm import tiny_llama
    from dlkit.core.progress import quiet_transformers

    shape = CASES[name]["shape"]
    folder = root / (shape if shape != "gemma2-2b" else "gemma2-2b-bf16")
    if (folder / "config.json").is_file():
        return folder
    if shape == "gemma2-2b":
        from real_size import gemma_folder

        gemma_folder(folder)
        return folder
    hidden, intermediate, layers, heads, kv_heads = SHAPES[shape]
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    with quiet_transformers():
        LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def settings(name: str, folder: Path, steps: int) -> dict:
    case = {k: v for k, v in CASES[name].items() if k != "shape"}
    return {"model": str(folder), **case, "unfreeze": "last2", "max_steps": steps}


def rss_now() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def child(spec: dict) -> dict:
    """Train one case; returns the measured peak above the process with its data ready."""
    import gc

    import torch

    from dlkit.core.config import load_config
    from dlkit.core.engine import fit
    from dlkit.core.run import Run
    from dlkit.llm.config import LlmConfig
    from dlkit.llm.task import LlmTask

    cfg = load_config(
        LlmConfig,
        None,
        {
            **spec["settings"],
            "data": "builtin:instruct",
            "packing": True,
            "val_size": 8,
            "test_size": 8,
            "lr": 1e-4,
            "save_every": 10_000,
            "eval_every": 10_000,
            "output_dir": spec["out"],
            "overwrite": True,
            "log_every": 1,
        },
    )
    task = LlmTask(cfg)
    gc.collect()
    cuda = torch.cuda.is_available()
    idle = rss_now()
    build, save = task.build_model, task.save_model
    peak: dict[str, int] = {}

    def build_then_reset():
        model = build()
        gc.collect()
        reset_peak()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        return model

    def read_peak_then_save(model, path):
        peak["bytes"] = torch.cuda.max_memory_allocated() if cuda else peak_rss() - idle
        return save(model, path)

    task.build_model, task.save_model = build_then_reset, read_peak_then_save
    metrics = fit(task, cfg, Run.create("llm", cfg, default_name="plan"))
    return {
        "measured_bytes": peak["bytes"],
        "params": metrics["total_params"],
        "trainable": metrics["trainable_params"],
        "seconds_per_step": metrics["train_seconds"] / metrics["steps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="10m-full,100m-full,500m-lora")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "dlkit-plan-models")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    from dlkit.core.plan import GIB
    from dlkit.llm.config import PlanConfig
    from dlkit.llm.plan import plan

    rows = []
    for name in args.cases.split(","):
        folder = model_folder(args.root, name)
        spec = settings(name, folder, args.steps)
        with tempfile.TemporaryDirectory() as out:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps({"settings": spec, "out": out})],
                capture_output=True,
                text=True,
                env={**os.environ, "TQDM_DISABLE": "1"},
            )
        if proc.returncode != 0:
            raise SystemExit(f"{name}: {proc.stderr[-2000:]}")
        measured = json.loads(proc.stdout.strip().splitlines()[-1])
        predicted = plan(PlanConfig(**{k: v for k, v in spec.items() if k != "max_steps"}))
        ratio = predicted["total_gib"] * GIB / measured["measured_bytes"]
        rows.append(
            {
                "case": name,
                "params": measured["params"],
                "trainable": measured["trainable"],
                "batch_size": spec["batch_size"],
                "max_length": spec["max_length"],
                "measured_gib": round(measured["measured_bytes"] / GIB, 3),
                "predicted_gib": predicted["total_gib"],
                "predicted / measured": round(ratio, 3),
                "parts_gib": {
                    k.removesuffix("_gib"): v
                    for k, v in predicted.items()
                    if k.endswith("_gib") and k not in ("total_gib", "budget_gib")
                },
                "seconds_per_step": round(measured["seconds_per_step"], 2),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"load": os.getloadavg()[0], "cases": rows}, indent=2))


if __name__ == "__main__":
    main()
