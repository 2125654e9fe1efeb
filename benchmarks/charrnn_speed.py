"""charrnn speed and quality, printed as JSON (not asserted).

1. Characters/s of `dlkit charrnn train --arch transformer` (the engine, Accelerate, the block datasets)
   against a plain nanoGPT-style PyTorch loop training the same dlkit.nn GPT on the same memory-mapped
   builtin:markov text with the same batch, block, optimizer and clipping. Rounds alternate the two so
   a busy machine slows both alike; the median of each is compared (goal: ratio >= 0.95).
2. Validation bits per character of every --arch after the same wall-clock training budget on
   builtin:markov, next to the optimum (the chain's entropy rate in bits).

    python benchmarks/charrnn_speed.py [--steps 100] [--rounds 2] [--budget 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dlkit.charrnn import data, models
from dlkit.charrnn.config import CharRNNConfig
from dlkit.charrnn.task import train
from dlkit.core.config import load_config
from dlkit.core.progress import MODE

MODEL = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "block_size": 64}
BATCH, LR = 32, 3e-3


def dlkit_chars_per_second(out: Path, steps: int) -> float:
    cfg = load_config(CharRNNConfig, None, {
        "data": "builtin:markov", "arch": "transformer", "output_dir": str(out), "overwrite": True,
        "max_steps": steps, "batch_size": BATCH, "lr": LR, "eval_every": 10**9, "save_every": 10**9,
        "log_every": 10**9, "sample_chars": 0, "warmup": 0, **MODEL})
    return train(cfg)["tokens_per_second"]  # characters in trained steps / training seconds (eval excluded)


def plain_chars_per_second(steps: int) -> float:
    """nanoGPT's train.py reduced to its loop: get_batch from the memmap, forward, backward, clip, step."""
    text = data.load_text("builtin:markov")
    splits = data.split_text(text, MODEL["block_size"], 0.1)
    train_ids, T = splits.train, MODEL["block_size"]
    torch.manual_seed(0)
    spec = models.ModelSpec("transformer", len(splits.vocab), MODEL["hidden_size"], MODEL["num_layers"],
                            MODEL["num_heads"], T)
    model = models.build_model(spec).train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.0}, {"params": no_decay}], lr=LR)

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(train_ids) - T, (BATCH,))
        x = torch.stack([torch.from_numpy(train_ids[i:i + T].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(train_ids[i + 1:i + 1 + T].astype(np.int64)) for i in ix])
        return x, y

    start = time.perf_counter()
    for _ in range(steps):
        x, y = get_batch()
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * BATCH * T / (time.perf_counter() - start)


def bpc_after_budget(out: Path, arch: str, budget_s: float) -> dict:
    """Time a short probe run, then train for as many steps as fit in `budget_s` seconds."""
    settings = {"data": "builtin:markov", "arch": arch, "batch_size": 64, "block_size": 32, "hidden_size": 32,
                "num_layers": 1, "num_heads": 2, "lr": 2e-2, "sample_chars": 0, "save_every": 10**9,
                "max_val_blocks": 0, "overwrite": True}
    probe = train(load_config(CharRNNConfig, None, {**settings, "output_dir": str(out / f"{arch}-probe"),
                                                    "max_steps": 10, "eval_every": 10**9}))
    steps = max(10, int(budget_s / (probe["train_seconds"] / probe["steps"])))
    metrics = train(load_config(CharRNNConfig, None, {**settings, "output_dir": str(out / arch),
                                                      "max_steps": steps, "eval_every": steps}))
    return {"arch": arch, "steps": steps, "train_seconds": round(metrics["train_seconds"], 2),
            "chars_per_second": round(metrics["tokens_per_second"]), "val_bpc": round(metrics["val_bpc"], 4),
            "optimal_bpc": round(metrics["optimal_bpc"], 4), "params": metrics["trainable_params"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per speed round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating dlkit/plain rounds")
    parser.add_argument("--budget", type=float, default=8.0, help="training seconds per arch in the bpc table")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    MODE.quiet = True
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        plain_chars_per_second(10)  # warm-up: first-call costs (allocator, lazy imports) count for neither side
        dlkit_rates, plain_rates = [], []
        for _ in range(args.rounds):
            dlkit_rates.append(dlkit_chars_per_second(out / "speed", args.steps))
            plain_rates.append(plain_chars_per_second(args.steps))
        dlkit_rate, plain_rate = statistics.median(dlkit_rates), statistics.median(plain_rates)
        table = [bpc_after_budget(out, arch, args.budget) for arch in ["rnn", "gru", "lstm", "lstm-scratch",
                                                                       "transformer"]]
    result = {
        "benchmark": "charrnn_speed",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "speed": {"model": {"arch": "transformer", **MODEL, "batch_size": BATCH}, "steps": args.steps,
                  "dlkit_chars_per_second": round(dlkit_rate), "plain_chars_per_second": round(plain_rate),
                  "ratio": round(dlkit_rate / plain_rate, 3), "goal": 0.95,
                  "rounds": {"dlkit": [round(r) for r in dlkit_rates], "plain": [round(r) for r in plain_rates]}},
        "bpc_after_budget": {"budget_seconds": args.budget, "data": "builtin:markov", "block_size": 32,
                             "hidden_size": 32, "num_layers": 1, "batch_size": 64, "lr": 2e-2, "rows": table},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
