"""`dlkit qa` speed on builtin:tiny-bert + builtin:qa-synthetic: training windows/s through the engine next to
a plain PyTorch loop over the same windows and batches, and span decoding (post-processing) questions/s.

Prints one JSON object (numbers side by side, nothing asserted):

    python benchmarks/qa_throughput.py [--steps 60] [--max-length 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from dlkit.core import progress
from dlkit.core.config import load_config
from dlkit.core.engine import build_optimizer, build_scheduler, fit
from dlkit.core.run import Run
from dlkit.qa.config import QAConfig
from dlkit.qa.task import QATask, span_loss, window_logits
from dlkit.qa.windows import best_spans


def engine_run(cfg: QAConfig) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg.output_dir = tmp
        task = QATask(cfg)
        metrics = fit(task, cfg, Run.create("qa", cfg, "bench"))
    return {"windows_per_second": metrics["samples_per_second"], "tokens_per_second": metrics["tokens_per_second"]}


def plain_loop(cfg: QAConfig) -> dict:
    """The same windows, batches, model, optimizer and schedule, without the engine."""
    torch.manual_seed(cfg.seed)
    task = QATask(cfg)
    model = task.build_model().train()
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, cfg.max_steps)
    order = torch.randperm(len(task.train_windows), generator=torch.Generator().manual_seed(0)).tolist()
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    windows = tokens = 0
    start = time.perf_counter()
    for step in range(cfg.max_steps):
        batch = task.collate([(i, task.train_windows[i]) for i in batches[step % len(batches)]])
        loss, _, _ = span_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        windows += len(batch["input_ids"])
        tokens += int(batch["attention_mask"].sum())
    seconds = time.perf_counter() - start
    return {"windows_per_second": windows / seconds, "tokens_per_second": tokens / seconds}


@torch.no_grad()
def decode_speed(cfg: QAConfig) -> dict:
    task = QATask(cfg)
    model = task.build_model().eval()
    rows = []
    for first in range(0, len(task.val_windows), 64):
        items = [(i, task.val_windows[i]) for i in range(first, min(first + 64, len(task.val_windows)))]
        batch = task.collate(items)
        rows.extend(
            window_logits(*model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")), batch)
        )
    rows.sort()
    starts, ends = [r[1] for r in rows], [r[2] for r in rows]
    start = time.perf_counter()
    best_spans(task.val_examples, task.val_windows, starts, ends, cfg, allow_null=True)
    seconds = time.perf_counter() - start
    return {
        "questions_per_second": len(task.val_examples) / seconds,
        "windows": len(task.val_windows),
        "n_best": cfg.n_best,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    progress.MODE.quiet = True
    cfg = load_config(
        QAConfig,
        None,
        {
            "max_steps": args.steps,
            "max_length": args.max_length,
            "doc_stride": args.max_length // 4,
            "batch_size": 32,
            "head": "linear",
            "eval_every": 10_000,
            "save_every": 10_000,
            "max_eval_examples": 1,
        },
    )
    engine = engine_run(cfg)
    plain = plain_loop(cfg)
    result = {
        "model": "builtin:tiny-bert",
        "data": "builtin:qa-synthetic",
        "max_length": args.max_length,
        "batch_size": cfg.batch_size,
        "steps": args.steps,
        "threads": args.threads,
        "train_engine": engine,
        "train_plain_loop": plain,
        "engine_over_plain_windows_per_second": engine["windows_per_second"] / plain["windows_per_second"],
        "decode": decode_speed(
            load_config(QAConfig, None, {"max_length": args.max_length, "doc_stride": args.max_length // 4})
        ),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
