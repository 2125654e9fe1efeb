"""Engine overhead: the same model and data trained by a plain PyTorch loop and by `dlkit.core.engine.fit`.

Both loops do the same work per step (DataLoader, forward, backward, clip, AdamW, LR schedule,
zero_grad, loss.item()); the engine adds Accelerate, its RNG snapshots, history logging and
progress. Runs are interleaved and the median is taken. Prints one JSON object:

    python benchmarks/engine_overhead.py [--repeats 3] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlkit.core import progress
from dlkit.core.config import TrainConfig
from dlkit.core.engine import build_scheduler, fit
from dlkit.core.run import Run
from dlkit.core.task import Task

DIM, HIDDEN, BATCH = 64, 512, 64


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(DIM, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, 1))


def make_data(n: int) -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, DIM, generator=gen)
    return TensorDataset(x, x.sum(-1, keepdim=True).tanh())


@dataclass
class BenchTask(Task):
    data: TensorDataset

    def build_model(self) -> nn.Module:
        return make_model()

    def datasets(self):
        return self.data, None

    def training_step(self, model, batch):
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    def evaluate(self, model, loader, accel):
        return {}


def plain_loop(data: TensorDataset, cfg: TrainConfig) -> float:
    """samples/s of a hand-written loop doing the same per-step work."""
    torch.manual_seed(cfg.seed)
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg, cfg.max_steps)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    start, step, losses = time.perf_counter(), 0, []
    while step < cfg.max_steps:
        for x, y in loader:
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            if step == cfg.max_steps:
                break
    return step * cfg.batch_size / (time.perf_counter() - start)


def engine_loop(data: TensorDataset, cfg: TrainConfig) -> tuple[float, float]:
    """(samples/s over the training loop as the engine measures it, samples/s over the whole fit call)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg.output_dir = f"{tmp}/run"
        start = time.perf_counter()
        metrics = fit(BenchTask(data), cfg, Run.create("bench", cfg, "bench"))
        wall = time.perf_counter() - start
    return metrics["samples_per_second"], cfg.max_steps * cfg.batch_size / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    progress.MODE.quiet = True
    torch.set_num_threads(1)  # comparable numbers on a shared machine
    data = make_data(BATCH * args.steps)
    plain, engine, engine_wall = [], [], []
    for _ in range(args.repeats):
        cfg = TrainConfig(max_steps=args.steps, batch_size=BATCH, lr=1e-3, log_every=10, save_every=10**9)
        plain.append(plain_loop(data, cfg))
        loop_rate, wall_rate = engine_loop(data, cfg)
        engine.append(loop_rate)
        engine_wall.append(wall_rate)
    result = {
        "steps": args.steps,
        "batch_size": BATCH,
        "threads": 1,
        "repeats": args.repeats,
        "plain_samples_per_second": statistics.median(plain),
        "engine_samples_per_second": statistics.median(engine),
        "ratio_engine_over_plain": statistics.median(engine) / statistics.median(plain),
        "engine_wall_samples_per_second_incl_setup_and_final_save": statistics.median(engine_wall),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
