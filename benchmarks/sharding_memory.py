"""Memory per process of full fine-tuning with and without --sharding fsdp, on 1 and 2 CPU processes (gloo).

A Llama shape larger than the builtin one (random init, the builtin tokenizer) is written to a temp folder, then
`dlkit llm train --method full` runs a few steps four ways: 1 process, 1 process with --sharding fsdp, 2 processes
DDP, 2 processes with --sharding fsdp (torchrun). Every run has the same global batch. Prints one JSON object per
run (from the main process's metrics.json): param_memory_mb is the parameter storage the process holds (its
shards under FSDP), peak_memory_mb the process's peak resident set size (which includes loading the whole model
before it is sharded, and torch itself).

    python benchmarks/sharding_memory.py [--hidden 512] [--layers 8] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def write_model(folder: Path, hidden: int, layers: int) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from dlkit.builtin import BUILTINS

    tiny = BUILTINS["tiny-llama"].load()
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for extra in Path(tiny).glob("*.jinja"):
        shutil.copy(extra, folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        write_model(model, args.hidden, args.layers)
        common = [
            "-m",
            "dlkit",
            "-q",
            "llm",
            "train",
            "--method",
            "full",
            "--model",
            str(model),
            "--data",
            "builtin:instruct",
            "--limit",
            "64",
            "--max-length",
            "128",
            "--max-steps",
            str(args.steps),
            "--eval-every",
            str(args.steps),
            "--max-new-tokens",
            "2",
        ]
        runs = {
            "1 process": ([sys.executable], ["--batch-size", "8"]),
            "1 process, fsdp": ([sys.executable], ["--batch-size", "8", "--sharding", "fsdp"]),
            "2 processes, DDP": (
                [str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node", "2"],
                ["--batch-size", "4"],
            ),
            "2 processes, fsdp": (
                [str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node", "2"],
                ["--batch-size", "4", "--sharding", "fsdp"],
            ),
        }
        for name, (launcher, extra) in runs.items():
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            subprocess.run([*launcher, *common, *extra, "--output-dir", str(out)], check=True)
            metrics = json.loads((out / "metrics.json").read_text())
            print(
                json.dumps(
                    {
                        "run": name,
                        **{
                            k: metrics[k]
                            for k in (
                                "total_params",
                                "processes",
                                "sharding",
                                "param_memory_mb",
                                "peak_memory_mb",
                                "train_loss",
                            )
                        },
                    }
                )
            )


if __name__ == "__main__":
    main()
