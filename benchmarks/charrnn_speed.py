"""charrnn speed against nanoGPT, and quality per architecture, printed as JSON (not asserted).

1. nanoGPT's CPU recipe (4 layers, 4 heads, 128 dims, block 64, batch 12, no eval, dropout 0, AdamW 1e-3 with
   betas (0.9, 0.99), weight decay 0.1, warmup 100, clipping 1.0), end to end in this process:
   - nanogpt: nanoGPT's model.py GPT (fused qkv, F.scaled_dot_product_attention) and train.py loop (get_batch
     from the memory-mapped ids, forward, backward, clip, step), data prepared once beforehand as prepare.py does;
   - dlkit / dlkit_scratch: `dlkit charrnn train --arch transformer` with `--attention sdpa` / the default
     from-scratch attention, through the engine (run folder, checkpoint, final model; one val batch).
   Same text (builtin:text: tinyshakespeare itself is not available offline), same steps. Rounds alternate
   the contenders so a busy machine slows them alike; medians. Wall is the whole call (startup included);
   CPU is the process CPU time of that call (steadier on a shared machine). Goal: dlkit wall <= 1.0x nanogpt.
2. Where dlkit's time goes: setup and saving around the steps, the cost of an evaluation (up to 512 val blocks)
   and of sampling 300 characters, and with --profile the top operators of 20 training steps of each model.
3. Validation bits per character of every --arch after the same wall-clock training budget on
   builtin:markov, next to the optimum (the chain's entropy rate in bits); --budget 0 skips it.

    python benchmarks/charrnn_speed.py [--steps 400] [--rounds 2] [--budget 8] [--threads 1] [--profile]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlkit.charrnn import data, models
from dlkit.charrnn.config import CharRNNConfig
from dlkit.charrnn.task import train
from dlkit.core.config import load_config
from dlkit.core.progress import MODE

DATA = "builtin:text"
N_LAYER, N_HEAD, N_EMBD, BLOCK, BATCH = 4, 4, 128, 64, 12
LR, MIN_LR, WARMUP, WEIGHT_DECAY, BETAS = 1e-3, 1e-4, 100, 0.1, (0.9, 0.99)


class NanoBlock(nn.Module):
    """nanoGPT's Block (CausalSelfAttention + MLP, pre-norm, LayerNorm with bias)."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(N_EMBD), nn.LayerNorm(N_EMBD)
        self.c_attn = nn.Linear(N_EMBD, 3 * N_EMBD)
        self.c_proj = nn.Linear(N_EMBD, N_EMBD)
        self.c_fc = nn.Linear(N_EMBD, 4 * N_EMBD)
        self.mlp_proj = nn.Linear(4 * N_EMBD, N_EMBD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class NanoGPT(nn.Module):
    """nanoGPT's GPT: token + position embeddings, blocks, final norm, head tied to the embedding."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, N_EMBD), nn.Embedding(BLOCK, N_EMBD)
        self.h = nn.ModuleList(NanoBlock() for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(N_EMBD)
        self.lm_head = nn.Linear(N_EMBD, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight") or name.endswith("mlp_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * N_LAYER))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


def prepare_ids(root: Path) -> tuple[Path, int]:
    """nanoGPT's prepare.py: the training ids as a uint16 file, once, before any timed run."""
    text = data.load_text(DATA)
    splits = data.split_text(text, BLOCK, 0.1)
    path = root / "train.bin"
    np.asarray(splits.train, dtype=np.uint16).tofile(path)
    return path, len(splits.vocab)


def nanogpt(ids_path: Path, vocab_size: int, steps: int) -> dict:
    """nanoGPT's train.py loop, minus eval and logging, from the memory map."""
    start = time.perf_counter()
    train_ids = np.memmap(ids_path, dtype=np.uint16, mode="r")
    torch.manual_seed(1337)
    model = NanoGPT(vocab_size)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=BETAS
    )

    def get_lr(it: int) -> float:
        if it < WARMUP:
            return LR * (it + 1) / (WARMUP + 1)
        ratio = (it - WARMUP) / max(1, steps - WARMUP)
        return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(train_ids) - BLOCK, (BATCH,))
        x = torch.stack([torch.from_numpy(train_ids[i : i + BLOCK].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(train_ids[i + 1 : i + 1 + BLOCK].astype(np.int64)) for i in ix])
        return x, y

    train_start = time.perf_counter()
    x, y = get_batch()
    for it in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(it)
        loss = model(x, y)
        x, y = get_batch()  # nanoGPT prefetches the next batch while the forward runs on a GPU
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if it % 10 == 0:
            loss.item()  # nanoGPT's log line every log_interval iterations
    end = time.perf_counter()
    return {"wall_seconds": end - start, "train_seconds": end - train_start, "final_loss": loss.item()}


def dlkit_config(out: Path, steps: int, attention: str) -> CharRNNConfig:
    return load_config(
        CharRNNConfig,
        None,
        {
            "data": DATA,
            "arch": "transformer",
            "attention": attention,
            "output_dir": str(out),
            "overwrite": True,
            "max_steps": steps,
            "batch_size": BATCH,
            "block_size": BLOCK,
            "hidden_size": N_EMBD,
            "num_layers": N_LAYER,
            "num_heads": N_HEAD,
            "dropout": 0.0,
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "warmup": WARMUP,
            "eval_every": 10**9,
            "save_every": 10**9,
            "log_every": 10,
            "sample_chars": 0,
            "max_val_blocks": BATCH,
        },
    )


def dlkit(out: Path, steps: int, attention: str) -> dict:
    start = time.perf_counter()
    metrics = train(dlkit_config(out, steps, attention))
    return {
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": metrics["train_seconds"],
        "final_loss": metrics["train_loss"],
    }


def timed(fn, *args) -> dict:
    cpu = time.process_time()
    result = fn(*args)
    return {**result, "cpu_seconds": time.process_time() - cpu}


def side_costs(out: Path) -> dict:
    """Seconds of what surrounds training in dlkit: an evaluation (up to 512 val blocks), sampling 300 characters."""
    from dlkit.charrnn.task import CharRNNTask
    from dlkit.core.engine import eval_loader

    task = CharRNNTask(load_config(CharRNNConfig, None, {**vars(dlkit_config(out, 1, "sdpa")), "max_val_blocks": 512}))
    model = task.build_model().eval()
    _, val_set = task.datasets()

    class Accel:  # the engine's single-process view, without building an Accelerator
        num_processes, process_index, device = 1, 0, torch.device("cpu")

    start = time.perf_counter()
    with torch.no_grad():
        task.evaluate(model, eval_loader(val_set, task.collate, 64, Accel), Accel)
    eval_seconds = time.perf_counter() - start
    start = time.perf_counter()
    list(models.stream(model, task.vocab.encode("ROMEO:").tolist(), 300, generator=torch.Generator()))
    return {
        "eval_seconds": eval_seconds,
        "eval_blocks": len(val_set),
        "sample_300_chars_seconds": time.perf_counter() - start,
    }


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, steps: int) -> None:
    for _ in range(steps):
        loss = model(x, x)
        loss = loss[1] if isinstance(loss, tuple) else loss  # dlkit's models return (logits, loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def profile(vocab_size: int) -> dict:
    """Top operators (self CPU ms) of 20 training steps of nanoGPT's model and of dlkit's, scratch and sdpa."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    x = torch.randint(vocab_size, (BATCH, BLOCK))
    table = {}
    for name in ("nanogpt", "dlkit_scratch", "dlkit_sdpa"):
        torch.manual_seed(0)
        if name == "nanogpt":
            model: nn.Module = NanoGPT(vocab_size)
        else:
            model = models.build_model(
                models.ModelSpec(
                    "transformer", vocab_size, N_EMBD, N_LAYER, N_HEAD, BLOCK, attention=name.removeprefix("dlkit_")
                )
            )
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
        train_steps(model, optimizer, x, 1)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            train_steps(model, optimizer, x, 20)
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]
        table[name] = {
            "total_ms": sum(e.self_cpu_time_total for e in prof.key_averages()) / 1000,
            "top_ops_ms": {e.key: round(e.self_cpu_time_total / 1000, 1) for e in events},
        }
    return table


def bpc_after_budget(out: Path, arch: str, budget_s: float) -> dict:
    """Time a short probe run, then train for as many steps as fit in `budget_s` seconds."""
    settings = {
        "data": "builtin:markov",
        "arch": arch,
        "batch_size": 64,
        "block_size": 32,
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "lr": 2e-2,
        "sample_chars": 0,
        "save_every": 10**9,
        "max_val_blocks": 0,
        "overwrite": True,
    }
    probe = train(
        load_config(
            CharRNNConfig,
            None,
            {**settings, "output_dir": str(out / f"{arch}-probe"), "max_steps": 10, "eval_every": 10**9},
        )
    )
    steps = max(10, int(budget_s / (probe["train_seconds"] / probe["steps"])))
    metrics = train(
        load_config(
            CharRNNConfig, None, {**settings, "output_dir": str(out / arch), "max_steps": steps, "eval_every": steps}
        )
    )
    return {
        "arch": arch,
        "steps": steps,
        "train_seconds": round(metrics["train_seconds"], 2),
        "chars_per_second": round(metrics["tokens_per_second"]),
        "val_bpc": round(metrics["val_bpc"], 4),
        "optimal_bpc": round(metrics["optimal_bpc"], 4),
        "params": metrics["trainable_params"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per run (nanoGPT recipe: 400)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds over the contenders")
    parser.add_argument("--budget", type=float, default=8.0, help="training seconds per arch in the bpc table")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--profile", action="store_true", help="top operators of 20 steps of each model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    MODE.quiet = True
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ids_path, vocab_size = prepare_ids(out)
        nanogpt(ids_path, vocab_size, 5)  # warm-up: first-call costs (allocator, kernels) count for neither side
        contenders = {
            "nanogpt": lambda: nanogpt(ids_path, vocab_size, args.steps),
            "dlkit": lambda: dlkit(out / "sdpa", args.steps, "sdpa"),
            "dlkit_scratch": lambda: dlkit(out / "scratch", args.steps, "scratch"),
        }
        runs: dict[str, list[dict]] = {name: [] for name in contenders}
        names = list(contenders)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                runs[name].append(timed(contenders[name]))
        table = {
            name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
            | {"rounds_wall_seconds": [round(r["wall_seconds"], 2) for r in rs]}
            for name, rs in runs.items()
        }
        ref = table["nanogpt"]
        speed = {
            "recipe": {
                "layers": N_LAYER,
                "heads": N_HEAD,
                "dim": N_EMBD,
                "block": BLOCK,
                "batch": BATCH,
                "steps": args.steps,
                "data": DATA,
                "vocab_size": vocab_size,
            },
            **table,
            "goal_wall_ratio": 1.0,
            "ratios": {
                name: {
                    "wall": table[name]["wall_seconds"] / ref["wall_seconds"],
                    "train": table[name]["train_seconds"] / ref["train_seconds"],
                    "cpu": table[name]["cpu_seconds"] / ref["cpu_seconds"],
                }
                for name in ("dlkit", "dlkit_scratch")
            },
        }
        speed["dlkit_startup_seconds"] = table["dlkit"]["wall_seconds"] - table["dlkit"]["train_seconds"]
        speed["side_costs"] = side_costs(out / "side")
        if args.profile:
            speed["profile"] = profile(vocab_size)
        rows = (
            [bpc_after_budget(out, arch, args.budget) for arch in ["rnn", "gru", "lstm", "lstm-scratch", "transformer"]]
            if args.budget
            else []
        )
    result = {
        "benchmark": "charrnn_speed",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "speed": speed,
        "bpc_after_budget": {
            "budget_seconds": args.budget,
            "data": "builtin:markov",
            "block_size": 32,
            "hidden_size": 32,
            "num_layers": 1,
            "batch_size": 64,
            "lr": 2e-2,
            "rows": rows,
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
