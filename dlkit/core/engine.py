"""THE training loop. Every group trains through `fit`; checkpointing, exact resume, accumulation,
mixed precision, clipping, schedules, early stopping, NaN guards, Ctrl-C, progress and metric
logging live here once.

Exact resume: the order of an epoch's batches is a pure function of (seed, epoch), drawn from a
private generator, and the DataLoader gets its own generator too, so no data-order draw touches the
global RNG that dropout uses. A checkpoint stores the RNG states, optimizer, scheduler, scaler and
our counters; resuming rebuilds the epoch's plan and starts after the batches already seen.
"""

from __future__ import annotations

import contextlib
import math
import random
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, send_to_device, set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from dlkit.core import plots
from dlkit.core.config import TrainConfig
from dlkit.core.errors import ConfigError, DataError, Interrupted, RunError, TrainingStopped
from dlkit.core.launch import launch_warning
from dlkit.core.progress import TrainProgress, info, warn
from dlkit.core.run import Run, atomic_write_json

STATE_FILE = "trainer_state.json"
TRACKER_FOLDER = "tensorboard"  # inside the run folder; --report-to tensorboard writes its event files here


@dataclass
class TrainState:
    """Our counters, saved next to Accelerate's state in every checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch in progress
    batches_seen: int = 0  # this process's micro-batches consumed in `epoch`
    samples_seen: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0
    skipped_steps: int = 0
    best_value: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    last_eval_step: int = -1
    best_eval: dict[str, float] = field(default_factory=dict)
    last_eval: dict[str, float] = field(default_factory=dict)


def hparams(cfg: TrainConfig) -> dict[str, bool | int | float | str]:
    """The effective config as tracker hyperparameters (TensorBoard's HPARAMS tab takes scalars and strings)."""
    return {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in asdict(cfg).items()}


def fit(task: Any, cfg: TrainConfig, run: Run) -> dict[str, Any]:
    """Train `task` as `cfg` says, writing everything into `run`; returns the final metrics.json."""
    accel = build_accelerator(cfg, run)
    set_seed(cfg.seed)  # before build_model: the seed owns the init
    model = task.build_model()
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    trainable, total = count_parameters(model)
    train_set, val_set = task.datasets()
    if len(train_set) == 0:
        raise DataError("the training set is empty")
    collate = getattr(task, "collate", default_collate)
    optimizer = build_optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(epoch_plan(task, train_set, cfg, 0, accel)) / cfg.grad_accum)
    if steps_per_epoch == 0:
        raise DataError(f"the training set ({len(train_set)} examples) gives no batch per process")
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    scheduler = build_scheduler(optimizer, cfg, total_steps)
    model, optimizer = accel.prepare(model, optimizer)

    if cfg.resume:
        state = restore(accel, run, scheduler)
        run.truncate_history(state.step)
        info(f"resuming {run.dir} at step {state.step} (epoch {state.epoch})")
    else:
        state = TrainState()
        run.write_config(cfg, command=" ".join(["dlkit", *sys.argv[1:]]))
    if cfg.report_to != "none":
        accel.init_trackers(TRACKER_FOLDER, config=hparams(cfg))
    val_loader = eval_loader(val_set, collate, cfg.batch_size, accel) if val_set is not None else None

    loop = _Loop(task, cfg, run, accel, model, optimizer, scheduler, state, total_steps, val_loader)
    status = "finished"
    try:
        loop.train(train_set, collate)
    except _StopRequested:
        status = "interrupted"
        raise Interrupted(f"interrupted at step {state.step}; checkpoint saved. Resume with: "
                          f"{resume_command(run)}") from None
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, without saving a half-done step
        status = "interrupted"
        last = run.checkpoints()
        where = f"the last checkpoint is {last[-1].name}" if last else "no checkpoint was saved"
        raise Interrupted(f"stopped at once during step {state.step + 1}; {where}. Resume with: "
                          f"{resume_command(run)}") from None
    except TrainingStopped:
        status = "failed"
        raise
    finally:
        if status != "finished" and accel.is_main_process:
            run.write_metrics(loop.summary(trainable, total, status))
    if state.last_eval_step != state.step and val_loader is not None:
        loop.evaluate()
    if not run.checkpoint_path(state.step).exists():
        loop.checkpoint()
    accel.wait_for_everyone()
    metrics = loop.summary(trainable, total, status)
    if accel.is_main_process:
        save_model(task, accel.unwrap_model(model), run.model_dir)
        run.write_metrics(metrics)
        plots.loss_curves(run.history(), run.plots_dir / "loss.png")
    accel.end_training()
    return metrics


class _Loop:
    """The loop's moving parts, so `fit` reads top to bottom and the loop body stays on one screen."""

    def __init__(self, task, cfg, run, accel, model, optimizer, scheduler, state, total_steps, val_loader):
        self.task, self.cfg, self.run, self.accel = task, cfg, run, accel
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.state, self.total_steps, self.val_loader = state, total_steps, val_loader
        self.stop_requested = False  # set by the first Ctrl-C; honoured at the next step boundary
        self.window: dict[str, list[float]] = {}
        self.window_start = time.perf_counter()
        self.window_samples = self.window_tokens = 0
        self.paused = 0.0  # seconds of eval/checkpointing inside the current step, kept out of train time

    def train(self, train_set: Dataset, collate: Callable) -> None:
        cfg, state = self.cfg, self.state
        progress = TrainProgress(self.total_steps, state.step, enabled=self.accel.is_main_process)
        with progress, self.ctrl_c_finishes_the_step():
            self.progress = progress
            while state.step < self.total_steps and not self.should_stop:
                plan = epoch_plan(self.task, train_set, cfg, state.epoch, self.accel)
                self.run_epoch(plan, train_set, collate)
                if state.batches_seen >= len(plan):
                    state.epoch += 1
                    state.batches_seen = 0

    @property
    def should_stop(self) -> bool:
        return bool(self.cfg.early_stop_patience) and self.state.bad_evals >= self.cfg.early_stop_patience

    def run_epoch(self, plan: list[list[int]], train_set: Dataset, collate: Callable) -> None:
        cfg, state, accel, model = self.cfg, self.state, self.accel, self.model
        loader = DataLoader(train_set, batch_sampler=plan[state.batches_seen:], collate_fn=collate,
                            num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(cfg.seed))
        batches = iter(loader)
        while state.batches_seen < len(plan) and state.step < self.total_steps and not self.should_stop:
            start = time.perf_counter()
            group = min(cfg.grad_accum, len(plan) - state.batches_seen)  # the epoch's last step may be short
            losses, finite = [], True
            for i in range(group):
                batch = send_to_device(next(batches), accel.device)
                sync = i == group - 1
                with contextlib.nullcontext() if sync else accel.no_sync(model):
                    loss, logs = split_step_output(self.task.training_step(model, batch))
                    value = loss.detach().float().item()
                    finite = finite and math.isfinite(value)
                    if finite:
                        accel.backward(loss / group)
                losses.append(value)
                self.track(logs, len(plan[state.batches_seen + i]))
            finite, stop = self.agree(finite, self.stop_requested)
            if not finite:
                self.on_nonfinite(losses)
                state.batches_seen += group
                continue
            if cfg.max_grad_norm:
                accel.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.batches_seen += group
            self.paused = 0.0
            self.after_step(sum(losses) / len(losses), end_of_epoch=state.batches_seen >= len(plan))
            state.train_seconds += time.perf_counter() - start - self.paused  # eval and saving excluded
            if stop:
                self.checkpoint(next_epoch=state.batches_seen >= len(plan))
                raise _StopRequested

    def track(self, logs: dict[str, float], num_samples: int) -> None:
        self.state.samples_seen += num_samples
        self.window_samples += num_samples
        tokens = int(logs.pop("tokens", 0))
        self.state.tokens_seen += tokens
        self.window_tokens += tokens
        for key, value in logs.items():
            self.window.setdefault(key, []).append(float(value))

    def agree(self, finite: bool, stop: bool) -> tuple[bool, bool]:
        """(every process's loss was finite, some process asked to stop): all ranks must decide alike."""
        if self.accel.num_processes == 1:
            return finite, stop
        flags = torch.tensor([float(not finite), float(stop)], device=self.accel.device)
        not_finite, stop_any = self.accel.reduce(flags, reduction="sum").tolist()
        return not_finite == 0, stop_any > 0

    @contextlib.contextmanager
    def ctrl_c_finishes_the_step(self) -> Iterator[None]:
        """The first Ctrl-C lets the current step finish, then a checkpoint is saved at that boundary
        (so resuming is exact); a second Ctrl-C raises KeyboardInterrupt at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: Any) -> None:
            self.stop_requested = True
            signal.signal(signal.SIGINT, previous)
            warn("Ctrl-C: finishing this step and saving a checkpoint (press Ctrl-C again to stop at once)")

        signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def on_nonfinite(self, losses: list[float]) -> None:
        state = self.state
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg.nan_policy == "skip":
            state.skipped_steps += 1
            warn(f"non-finite loss at step {state.step + 1}; step skipped ({state.skipped_steps} so far)")
            return
        last = self.run.checkpoints()
        kept = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint had been saved yet"
        raise TrainingStopped(f"loss became {losses[-1]} at step {state.step + 1} (epoch {state.epoch}); training "
                              f"stopped and {kept}; lower --lr or pass --nan-policy skip")

    def after_step(self, loss: float, end_of_epoch: bool) -> None:
        cfg, state = self.cfg, self.state
        self.window.setdefault("loss", []).append(loss)
        if state.step % cfg.log_every == 0 or state.step == self.total_steps:
            self.log_train()
        self.progress.update(state.step, epoch=state.epoch, loss=loss, lr=self.scheduler.get_last_lr()[0])
        if self.val_loader is not None and _due(state.step, cfg.eval_every, end_of_epoch):
            self.evaluate()
        if _due(state.step, cfg.save_every, end_of_epoch):
            self.checkpoint(next_epoch=end_of_epoch)

    def log_train(self) -> None:
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        record = {"kind": "train", "step": self.state.step, "epoch": self.state.epoch}
        for key, values in self.window.items():
            record[key] = self.mean_over_processes(sum(values) / len(values))
        record["lr"] = self.scheduler.get_last_lr()[0]
        record["samples_per_second"] = self.window_samples * self.accel.num_processes / elapsed
        if self.window_tokens:
            record["tokens_per_second"] = self.window_tokens * self.accel.num_processes / elapsed
        self.log(record)
        self.window, self.window_samples, self.window_tokens = {}, 0, 0
        self.window_start = time.perf_counter()

    def log(self, record: dict[str, Any]) -> None:
        """One history line; with --report-to, its scalars also go to the tracker as KIND/KEY."""
        self.run.log(record)
        if self.cfg.report_to != "none":
            scalars = {f"{record['kind']}/{k}": v for k, v in record.items()
                       if k not in ("kind", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)}
            self.accel.log(scalars, step=record["step"])

    def mean_over_processes(self, value: float) -> float:
        if self.accel.num_processes == 1:
            return value
        tensor = torch.tensor(value, device=self.accel.device, dtype=torch.float64)
        return self.accel.reduce(tensor, reduction="mean").item()

    def evaluate(self) -> None:
        state, cfg = self.state, self.cfg
        eval_start = time.perf_counter()
        with isolated_rng():
            self.model.eval()
            with torch.no_grad():
                metrics = self.task.evaluate(self.model, self.val_loader, self.accel)
            if self.accel.is_main_process and hasattr(self.task, "on_eval"):  # still in eval mode: samples
                # without dropout, and BatchNorm statistics left as evaluated (and as the other ranks have them)
                self.task.on_eval(self.accel.unwrap_model(self.model), self.run, state.step)
            self.model.train()
        state.last_eval_step = state.step
        state.last_eval = metrics
        self.log({"kind": "eval", "step": state.step, "epoch": state.epoch, **metrics})
        if self.run.writer:
            plots.loss_curves(self.run.history(), self.run.plots_dir / "loss.png")
        self.track_best(metrics)
        self.progress.note(" ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))
        self.exclude_from_timing(time.perf_counter() - eval_start)
        if cfg.early_stop_patience and self.should_stop:
            info(f"early stop: {cfg.monitor} has not improved for {cfg.early_stop_patience} evaluations")

    def track_best(self, metrics: dict[str, float]) -> None:
        cfg, state = self.cfg, self.state
        if cfg.monitor not in metrics:
            if cfg.early_stop_patience or cfg.monitor != "val_loss":
                raise ConfigError(f"--monitor {cfg.monitor} is not an eval metric; choose one of "
                                  f"{', '.join(sorted(metrics))}")
            return
        value = float(metrics[cfg.monitor])
        better = state.best_value is None or (
            value < state.best_value if cfg.monitor_mode == "min" else value > state.best_value)
        if better:
            state.best_value, state.best_step, state.bad_evals = value, state.step, 0
            state.best_eval = {"step": state.step, **metrics}
        else:
            state.bad_evals += 1

    def checkpoint(self, next_epoch: bool = False) -> None:
        """Save a resumable checkpoint at the current step boundary (all processes take part)."""
        start, state = time.perf_counter(), self.state
        saved = TrainState(**asdict(state))
        if next_epoch:  # the epoch is done: resume starts the next one
            saved.epoch, saved.batches_seen = state.epoch + 1, 0
        save_checkpoint(self.accel, self.run, saved, self.scheduler, self.cfg.keep_last)
        self.exclude_from_timing(time.perf_counter() - start)

    def exclude_from_timing(self, seconds: float) -> None:
        """Eval and checkpoint time is not training time: keep it out of train_seconds and samples/s."""
        self.paused += seconds
        self.window_start += seconds

    def summary(self, trainable: int, total: int, status: str) -> dict[str, Any]:
        state = self.state
        seconds = max(state.train_seconds, 1e-9)
        metrics: dict[str, Any] = {
            "status": status,
            "group": self.run.group,
            **getattr(self.task, "summary", dict)(),
            "steps": state.step,
            "epochs": state.epoch,
            "trainable_params": trainable,
            "total_params": total,
            "trainable_pct": 100.0 * trainable / max(total, 1),
            "train_seconds": state.train_seconds,
            "samples_per_second": state.samples_seen * self.accel.num_processes / seconds,
            "peak_memory_mb": peak_memory_mb(),
            "skipped_items": int(getattr(self.task, "skipped_items", 0)),
            "skipped_steps": state.skipped_steps,
            "processes": self.accel.num_processes,
        }
        if state.tokens_seen:
            metrics["tokens_per_second"] = state.tokens_seen * self.accel.num_processes / seconds
        final_train = [r["loss"] for r in self.run.history("train")[-1:]] if self.run.writer else []
        if final_train:
            metrics["train_loss"] = final_train[0]
        metrics.update({k: v for k, v in state.last_eval.items()})
        metrics["final"] = {"step": state.last_eval_step, **state.last_eval}
        metrics["best"] = {"monitor": self.cfg.monitor, **state.best_eval}
        return metrics


class _StopRequested(Exception):
    """Ctrl-C was honoured at a step boundary and a checkpoint was saved."""


def _due(step: int, every: int, end_of_epoch: bool) -> bool:
    return step % every == 0 if every else end_of_epoch


# -- building blocks (each usable on its own) ----------------------------------------------------


def build_accelerator(cfg: TrainConfig, run: Run | None = None) -> Accelerator:
    cuda = torch.cuda.is_available()
    if cfg.precision == "fp16" and not cuda:
        raise ConfigError("--precision fp16 needs a CUDA GPU; use --precision bf16 or no on this machine")
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # a second fit in one process (notebook, tests) may change precision
    _cache_lomo_lookup()
    trackers = {"log_with": cfg.report_to, "project_dir": str(run.dir)} if run and cfg.report_to != "none" else {}
    accel = Accelerator(cpu=not cuda, mixed_precision=cfg.precision, **trackers)
    if (message := launch_warning(accel.num_processes)) is not None:
        warn(message)
    return accel


def _cache_lomo_lookup() -> None:
    """Accelerate's optimizer wrapper searches the disk for the `lomo_optim` package twice per step
    (importlib find_spec + metadata, ~0.3 ms: 8% of a small model's step on CPU, measured with
    benchmarks/engine_overhead.py). The answer cannot change while the process runs, so ask once."""
    import functools

    import accelerate.optimizer

    if not hasattr(accelerate.optimizer.is_lomo_available, "cache_info"):
        accelerate.optimizer.is_lomo_available = functools.cache(accelerate.optimizer.is_lomo_available)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total), counting shared tensors once."""
    seen: dict[int, nn.Parameter] = {}
    for p in model.parameters():
        seen.setdefault(id(p), p)
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return trainable, sum(p.numel() for p in seen.values())


def enable_gradient_checkpointing(model: nn.Module) -> None:
    enable = getattr(model, "gradient_checkpointing_enable", None)
    if enable is None:
        raise ConfigError(f"--gradient-checkpointing: {type(model).__name__} does not support it")
    enable()


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay only on weights with >= 2 dims (not biases or norms); frozen parameters left out."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters; check the method's freezing settings")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Linear warmup, then constant / linear decay to 0 / cosine decay to 0 / steps of x gamma."""
    warmup = int(cfg.warmup * total_steps) if cfg.warmup < 1 else int(cfg.warmup)
    step_size = cfg.step_size or max(1, (total_steps - warmup) // 3)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if cfg.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        if cfg.scheduler == "step":
            return cfg.gamma ** ((step - warmup) // step_size)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_plan(task: Any, dataset: Dataset, cfg: TrainConfig, epoch: int, accel: Accelerator) -> list[list[int]]:
    """This process's batches for `epoch`: a pure function of (seed, epoch), so resume can rebuild it."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    make_plan = getattr(task, "batch_plan", None)
    if make_plan is not None:
        plan = make_plan(dataset, cfg.batch_size, gen)
    else:
        order = torch.randperm(len(dataset), generator=gen).tolist()
        plan = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    world = accel.num_processes
    usable = len(plan) - len(plan) % world  # every process must take the same number of steps
    return plan[accel.process_index:usable:world]


def eval_loader(dataset: Dataset, collate: Callable, batch_size: int, accel: Accelerator) -> DataLoader:
    """This process's contiguous-free share of the val set (every world-th example), no padding,
    so sums reduced over processes equal the single-process numbers."""
    indices = list(range(accel.process_index, len(dataset), accel.num_processes))
    plan = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    return _DeviceLoader(DataLoader(dataset, batch_sampler=plan, collate_fn=collate), accel.device)


class _DeviceLoader:
    """Yields batches already on the accelerator's device."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, device

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield send_to_device(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)


def split_step_output(out: Any) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(out, tuple):
        loss, logs = out
        return loss, dict(logs)
    return out, {}


def mean_loss(task: Any, model: nn.Module, loader: Any, accel: Accelerator) -> float:
    """Example-weighted mean of `training_step` losses over the whole val set (all processes)."""
    total = torch.zeros(2, dtype=torch.float64, device=accel.device)
    for batch in loader:
        loss, logs = split_step_output(task.training_step(model, batch))
        weight = float(logs.get("weight", _batch_size(batch)))
        total += torch.tensor([loss.double().item() * weight, weight], dtype=torch.float64, device=accel.device)
    if accel.num_processes > 1:
        total = accel.reduce(total, reduction="sum")
    return (total[0] / total[1].clamp_min(1e-12)).item()


def gather(accel: Accelerator, items: list[Any]) -> list[Any]:
    """All processes' Python objects, in one list (for metrics needing every prediction)."""
    return gather_object(items) if accel.num_processes > 1 else items


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        return _batch_size(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)):
        return _batch_size(batch[0])
    raise TypeError(f"cannot tell the batch size of {type(batch).__name__}; return logs['weight']")


# -- RNG -------------------------------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def isolated_rng() -> Iterator[None]:
    """Eval and sampling must not shift the training RNG, or a resumed run would diverge."""
    state = capture_rng()
    try:
        yield
    finally:
        restore_rng(state)


# -- checkpoints -----------------------------------------------------------------------------------


def save_checkpoint(accel: Accelerator, run: Run, state: TrainState, scheduler: Any, keep_last: int) -> Path:
    """Accelerate state (model, optimizer, scaler, RNG) + our counters and the scheduler into step_N,
    written to a temp folder and renamed into place. The scheduler goes to JSON rather than through
    Accelerate's pickle, so everything is loaded back with weights_only=True."""
    final = run.checkpoint_path(state.step)
    tmp = final.with_name(final.name + ".tmp")
    if accel.is_main_process:
        _rmtree(tmp)
    accel.wait_for_everyone()
    accel.save_state(str(tmp), safe_serialization=True)
    accel.wait_for_everyone()
    if accel.is_main_process:
        atomic_write_json(tmp / STATE_FILE, {**asdict(state), "scheduler": scheduler.state_dict()})
        _rmtree(final)
        tmp.rename(final)
        for old in run.checkpoints()[:-keep_last]:
            _rmtree(old)
    accel.wait_for_everyone()
    return final


def restore(accel: Accelerator, run: Run, scheduler: Any) -> TrainState:
    """Load the newest readable checkpoint; an unreadable one is reported and the previous one used."""
    import json

    candidates = run.checkpoints()
    for ckpt in reversed(candidates):
        try:
            saved = json.loads((ckpt / STATE_FILE).read_text())
            scheduler_state = saved.pop("scheduler")
            state = TrainState(**saved)
            accel.load_state(str(ckpt))
            scheduler.load_state_dict(scheduler_state)
        except Exception as exc:  # truncated file, bad pickle, shape mismatch...
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            warn(f"checkpoint {ckpt} is unreadable ({reason}); trying the previous one")
            continue
        if ckpt != candidates[-1]:
            info(f"resuming from {ckpt.name} instead")
        return state
    raise RunError(f"--resume: no readable checkpoint in {run.checkpoints_dir}")


def _rmtree(path: Path) -> None:
    import shutil

    if path.exists():
        shutil.rmtree(path)


def save_model(task: Any, model: nn.Module, path: Path) -> None:
    custom = getattr(task, "save_model", None)
    if custom is not None:
        custom(model, path)
        return
    from safetensors.torch import save_model as save_safetensors

    path.mkdir(parents=True, exist_ok=True)
    save_safetensors(model, str(path / "model.safetensors"))


def peak_memory_mb() -> float:
    """CUDA max allocated when on a GPU, else the process's peak resident set size."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def resume_command(run: Run) -> str:
    args = [a for a in sys.argv[1:] if a not in ("--overwrite", "--resume")]
    if "--output-dir" not in args:
        args += ["--output-dir", str(run.dir)]
    return " ".join(["dlkit", *args, "--resume"])
