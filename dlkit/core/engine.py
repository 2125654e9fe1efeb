"""THE training loop. Every group trains through `fit`; checkpointing, exact resume, accumulation,
mixed precision, clipping, schedules, early stopping, NaN and divergence guards, Ctrl-C, progress and
metric logging live here once.

Batch plan: an epoch is a list of optimizer steps, each one batch of batch x accum x processes examples
drawn by the task's `batch_plan`, split into equal micro-batches (accum per process). Its loss is
sum(item losses) / (items in the whole step, all processes): each micro-batch backpropagates its mean
loss x its item count / that total (x processes, since DDP's all-reduce and FSDP's reduce-scatter average
gradients), so `--batch-size 4 --grad-accum 2` and two processes x 4 give the gradients of one batch of 8.

Sharding (--sharding fsdp): dlkit.core.sharding shards the model with FSDP2 before the optimizer is built;
Accelerate then prepares neither (it would wrap the model in DDP). The checkpoint, the final model and the
eval samples go through the sharded path (save_sharded_checkpoint, restore_sharded, whole_model), where
every process takes part.

Exact resume: the order of an epoch's batches is a pure function of (seed, epoch), drawn from a
private generator, and the DataLoader gets its own generator too, so no data-order draw touches the
global RNG that dropout uses. A checkpoint stores the RNG states, optimizer, scheduler, scaler and
our counters; resuming rebuilds the epoch's plan and starts after the steps already done. A resume
whose config would change the plan or the model is refused (`check_resume`).

What a checkpoint keeps of the model: the tensors that train (`Task.trained_names`: the trainable
parameters and the persistent buffers, by name), not the frozen base, which resume rebuilds from its source; a
fingerprint of the frozen parameters refuses a resume on other base weights. A LoRA checkpoint of a
2B-parameter model is then the adapter and its optimizer state, not 5-10 GB of unchanged weights.

Dtypes: trainable parameters are kept and updated in fp32 whatever dtype the checkpoint was saved in
(an AdamW step on a bf16 weight below its spacing rounds away). Under --precision bf16/fp16 frozen
parameters keep their dtype; with --precision no the whole model computes in fp32.

Device syncs: losses and logs stay on the device and are read once per logged step (and before an
eval or a checkpoint); the non-finite and divergence guards then check every step since the last
read. Only `--nan-policy skip` reads each step's loss, as it must decide before the optimizer step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import random
import resource
import signal
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, send_to_device, set_seed
from torch import nn
from torch.utils.data import DataLoader

from dlkit.core import plots, sharding
from dlkit.core.config import META_KEY, ShardingConfig, TrainConfig, flag_name, resume_changes, saved_dict
from dlkit.core.errors import ConfigError, DataError, Diverged, Interrupted, RunError, TrainingStopped
from dlkit.core.launch import launch_warning, sharding_refusal
from dlkit.core.modelcard import check_push, push_folder, write_card
from dlkit.core.progress import TrainProgress, info, warn
from dlkit.core.run import Run, atomic_write_json, checkpoint_step
from dlkit.core.task import SizedDataset, Task, check_task
from dlkit.core.trackers import TRACKER_FOLDERS, build_trackers, check_installed, tracker_names
from dlkit.core.weights import load_state_dict

STATE_FILE = "trainer_state.json"
WENT_BAD_FILE = "went_bad.json"  # in a checkpoint whose weights gave a non-finite or diverged loss; resume skips it
PLOT_EVERY_S = 30.0  # loss.png is redrawn after an evaluation at most this often while training (and once at the end)
WARMUP_STEPS = 2  # each process's first steps (lazy inits, first allocations) are left out of the throughput figures
SMOOTHING = 0.9  # EMA factor of the training loss the divergence guard follows (bias-corrected)
ACCELERATE_TESTED = ((1, 0), (2, 0))  # [low, high) versions whose private state the shims below know


@dataclass
class TrainState:
    """Our counters, saved next to Accelerate's state in every checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch in progress
    batches_seen: int = 0  # optimizer steps of `epoch` done (each batch x accum x processes examples)
    samples_seen: int = 0  # this process's examples
    tokens_seen: float = 0.0  # all processes' tokens
    train_seconds: float = 0.0  # wall time of every step, eval and checkpointing excluded
    train_cpu_seconds: float = 0.0  # this process's CPU time of the same
    # steady state: the steps after each process's first WARMUP_STEPS (after a resume too)
    steady_steps: int = 0
    steady_seconds: float = 0.0
    steady_cpu_seconds: float = 0.0
    steady_samples: int = 0  # this process's examples
    steady_tokens: float = 0.0  # all processes' tokens
    skipped_steps: int = 0
    best_value: float | None = None
    bad_evals: int = 0
    last_eval_step: int = -1
    best_eval: dict[str, float] = field(default_factory=dict)
    last_eval: dict[str, float] = field(default_factory=dict)
    loss_ema: float = 0.0  # divergence guard: EMA of the step loss (not bias-corrected) over ema_steps steps
    ema_steps: int = 0
    best_smoothed_loss: float | None = None


def hparams(cfg: TrainConfig) -> dict[str, bool | int | float | str]:
    """The effective config as tracker hyperparameters (TensorBoard's HPARAMS tab takes scalars and strings)."""
    return {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in asdict(cfg).items()}


def fit(task: Task, cfg: TrainConfig, run: Run) -> dict[str, Any]:
    """Train `task` as `cfg` says, writing everything into `run`; returns the final metrics.json."""
    check_task(task)
    check_push(cfg.push_to_hub)  # before any work: an upload that cannot happen is refused now, not after training
    cfg, fsdp = sharding.from_launcher(cfg)  # --sharding fsdp, or an `accelerate launch` FSDP config
    loop = _Loop(task, cfg, run, setup(task, cfg, run, fsdp))
    run_loop(loop)
    return finish(loop)


@dataclass
class Setup:
    """What `fit` builds before the first step."""

    accel: Accelerator
    model: nn.Module
    optimizer: Any
    scheduler: Any
    state: TrainState
    train_set: SizedDataset
    val_loader: _DeviceLoader | None
    shards: sharding.Sharded | None
    total_steps: int
    trainable: int
    total: int
    trained: TrainedTensors


def setup(task: Task, cfg: TrainConfig, run: Run, fsdp: sharding.FsdpSettings | None) -> Setup:
    """In dependency order: the accelerator, the seed, the model, the data, the optimizer and schedule, then
    the counters (a resumed run's, checked against its saved config and data)."""
    saved_config = run.read_config() if cfg.resume else None
    if saved_config is not None:
        check_resume(saved_config, cfg)
    run.record_folder(run.checkpoints_dir)  # written whole by Accelerate and the task's save_model
    for folder in TRACKER_FOLDERS if tracker_names(cfg.report_to) else ():  # written by the trackers
        run.record_folder(run.dir / folder)
    accel = build_accelerator(cfg, run)
    set_seed(cfg.seed)  # before build_model: the seed owns the init
    model = task.build_model()
    train_in_fp32(model, cfg.precision)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    trainable, total = count_parameters(model)
    trained = TrainedTensors.of(model, task.trained_names(model), cfg.model)
    train_set, val_set = checked_datasets(task)
    shards = sharding.shard(task, model, fsdp, cfg.precision, accel.device, accel.is_main_process) if fsdp else None
    optimizer = build_optimizer(model, cfg)  # after sharding: FSDP replaces the parameters with their shards
    first_epoch = step_plan(task, train_set, cfg, 0, accel.num_processes)
    if not first_epoch:
        raise DataError(f"the training set ({len(train_set)} examples) gives no batch per process")
    data = {
        "train_examples": len(train_set),
        "val_examples": len(val_set) if val_set is not None else 0,
        "processes": accel.num_processes,
        "plan": plan_fingerprint(first_epoch),
    }
    if saved_config is not None:
        check_resume_data(saved_config, data)
    total_steps = cfg.max_steps or cfg.epochs * len(first_epoch)
    scheduler = build_scheduler(optimizer, cfg, total_steps)
    if shards is None:  # a sharded model is FSDP's: Accelerate would wrap it in DDP
        model, optimizer = accel.prepare(model, optimizer)
        leave_model_to(trained, accel)
    if saved_config is not None:
        state = (
            restore(accel, run, scheduler, trained)
            if shards is None
            else restore_sharded(accel, run, scheduler, trained, shards, optimizer)
        )
        record_resume(run, cfg, saved_config, state.step)
        run.truncate_history(state.step)
        info(f"resuming {run.dir} at step {state.step} (epoch {state.epoch})")
    else:
        state = TrainState()
        run.write_config(cfg, command=command_text(cfg), data=data)
    if accel.log_with:
        accel.init_trackers(f"dlkit-{run.group}", config=hparams(cfg))
    val_loader = (
        eval_loader(val_set, task.collate, cfg.batch_size, accel, sharded=shards is not None)
        if val_set is not None
        else None
    )
    return Setup(
        accel, model, optimizer, scheduler, state, train_set, val_loader, shards, total_steps, trainable, total, trained
    )


def checked_datasets(task: Task) -> tuple[SizedDataset, SizedDataset | None]:
    """The task's datasets; an empty one is one line here, not an IndexError after a training step."""
    train_set, val_set = task.datasets()
    if len(train_set) == 0:
        raise DataError("the training set is empty")
    if val_set is not None and len(val_set) == 0:
        raise DataError("the validation set is empty; add examples or hold out a larger share for validation")
    return train_set, val_set


def run_loop(loop: _Loop) -> None:
    """The loop. A run stopped by Ctrl-C or by a bad loss raises, after writing its metrics.json (with its
    status) and closing the trackers."""
    state, run, cfg, accel = loop.state, loop.run, loop.cfg, loop.accel
    status = "finished"
    try:
        loop.train()
    except _StopRequested:
        status = "interrupted"
        raise Interrupted(
            f"interrupted at step {state.step}; checkpoint saved. Resume with: {resume_command(run, cfg)}"
        ) from None
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, without saving a half-done step
        status = "interrupted"
        last = run.checkpoints()
        where = f"the last checkpoint is {last[-1].name}" if last else "no checkpoint was saved"
        raise Interrupted(
            f"stopped at once during step {state.step + 1}; {where}. Resume with: {resume_command(run, cfg)}"
        ) from None
    except TrainingStopped:  # a non-finite or a diverged loss: the weights went bad
        status = "diverged"
        raise
    finally:
        if status != "finished":
            if accel.is_main_process:
                run.write_metrics(loop.summary(status))
            for tracker in accel.trackers:  # the tracker's run ends with the training (W&B, MLflow: one active run)
                tracker.finish()


def finish(loop: _Loop) -> dict[str, Any]:
    """After the last step: its eval and checkpoint, the final model saved and tested, metrics.json, the model
    card, loss.png, the trackers' final values and the upload."""
    state, run, cfg, accel, task = loop.state, loop.run, loop.cfg, loop.accel, loop.task
    if state.last_eval_step != state.step and loop.val_loader is not None:
        loop.evaluate()  # at the last step: loss.png is drawn once below, with the final history
    if not run.checkpoint_path(state.step).exists():
        loop.checkpoint()
    accel.wait_for_everyone()
    metrics = loop.summary("finished")
    with whole_model(accel, loop.model, loop.shards) as final:
        if final is not None:
            task.save_model(final, run.model_dir)
            metrics.update(final_test(task, final, run))
    if accel.is_main_process:
        run.write_metrics(metrics)
        write_card(run.model_dir, run, task.card_info())
        plots.loss_curves(run.history(), run.plots_dir / "loss.png")
    log_final(accel, metrics, state.step)
    accel.end_training()
    if cfg.push_to_hub and accel.is_main_process:
        push_folder(run.model_dir, cfg.push_to_hub)
    return metrics


def final_test(task: Task, model: nn.Module, run: Run) -> dict[str, Any]:
    """The task's test metrics of the final model: eval mode, no gradients, the training RNG untouched."""
    with isolated_rng(), torch.no_grad():
        model.eval()
        return task.test(model, run)


def log_final(accel: Accelerator, metrics: dict[str, Any], step: int) -> None:
    """metrics.json's numbers (eval metrics, time, throughput, parameters) to the trackers as final/KEY."""
    scalars = {f"final/{k}": v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if accel.log_with and scalars:
        accel.log(scalars, step=step)


class _Meter:
    """The loop's bookkeeping beside the step itself. Losses, logs and token counts stay on the device until a
    step is logged, evaluated or saved, then are read in one transfer (all processes summed) and the guards
    check each step's loss; the logging window averages them; the step clock keeps eval and checkpoint time
    out of the training time and the first WARMUP_STEPS of each process out of the steady-state rates."""

    def __init__(
        self, cfg: TrainConfig, state: TrainState, run: Run, accel: Accelerator, total_steps: int, evaluates: bool
    ) -> None:
        self.cfg, self.state, self.run, self.accel = cfg, state, run, accel
        self.total_steps, self.evaluates = total_steps, evaluates
        # on the device, not read yet: (step, this process's share of its loss); log sums and counts; tokens
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.tokens: Any = 0.0
        self.steady_tokens: Any = 0.0  # the share of `tokens` trained in steady steps
        # read (all processes), waiting for the next history line
        self.window_losses: list[float] = []
        self.window: dict[str, list[float]] = {}  # key -> [sum, count]
        self.window_clock = Throughput()  # the steady steps since the last history line
        self.last_loss = float("nan")
        self.steps_here = 0  # steps this process has run (the first WARMUP_STEPS are not steady)
        self.start, self.start_cpu = 0.0, 0.0
        # wall and CPU seconds of eval/checkpointing inside the current step, kept out of train time
        self.paused, self.paused_cpu = 0.0, 0.0
        self.diverged: dict[str, float] = {}
        # the newest step whose loss passed the guards: the weights before it were good, so every checkpoint
        # older than it is good (a checkpoint is saved only after its own step passed, hence = step on resume)
        self.passed_step = state.step

    # -- the step clock -----------------------------------------------------------------------------

    def start_step(self) -> bool:
        """A step begins (its data loading counts); returns whether it is steady."""
        self.start, self.start_cpu = time.perf_counter(), time.process_time()
        self.steps_here += 1
        return self.steps_here > WARMUP_STEPS

    def stepped(self) -> None:
        """The update is applied: what pauses from here on (eval, checkpoint) is not training time."""
        self.paused, self.paused_cpu = 0.0, 0.0

    def finish_step(self, samples: int, steady: bool) -> None:
        state = self.state
        seconds = time.perf_counter() - self.start - self.paused  # eval and saving excluded
        cpu_seconds = time.process_time() - self.start_cpu - self.paused_cpu
        state.train_seconds += seconds
        state.train_cpu_seconds += cpu_seconds
        if steady:
            state.steady_steps += 1
            state.steady_seconds += seconds
            state.steady_cpu_seconds += cpu_seconds
            state.steady_samples += samples
            self.window_clock.add(seconds, cpu_seconds, samples)

    def exclude(self, seconds: float, cpu_seconds: float) -> None:
        """Eval and checkpoint time is not training time: keep it out of train_seconds and samples/s."""
        self.paused += seconds
        self.paused_cpu += cpu_seconds

    # -- device values and the guards ----------------------------------------------------------------

    def track(self, step_loss: torch.Tensor, logs: list[dict[str, Any]], sizes: list[int], steady: bool) -> None:
        """The next step's loss and each micro-batch's logs (of `sizes` examples), left on the device."""
        for entry, num_samples in zip(logs, sizes, strict=True):
            self.state.samples_seen += num_samples
            tokens = entry.pop("tokens", None)
            if tokens is not None:
                self.tokens = self.tokens + _detached(tokens)
                if steady:
                    self.steady_tokens = self.steady_tokens + _detached(tokens)
            for key, value in entry.items():
                self.sums[key] = self.sums.get(key, 0.0) + _detached(value)
                self.counts[key] = self.counts.get(key, 0) + 1
        self.pending.append((self.state.step + 1, step_loss))

    def sync_due(self, step: int, end_of_epoch: bool) -> bool:
        """Whether to read the device values before applying `step`: it is logged, evaluated or saved
        (no checkpoint may hold a step the guards have not checked), or --nan-policy skip needs to know."""
        cfg = self.cfg
        return (
            cfg.nan_policy == "skip"
            or step % cfg.log_every == 0
            or step in (1, self.total_steps)
            or (self.evaluates and _due(step, cfg.eval_every, end_of_epoch))
            or _due(step, cfg.save_every, end_of_epoch)
        )

    def sync(self, stop_requested: bool) -> tuple[bool, bool]:
        """Read every pending loss, log and token count (all processes summed, one transfer) and run the
        guards on each pending step. Returns (the newest step's loss is finite, some process asked to stop)."""
        accel, world = self.accel, self.accel.num_processes
        keys = sorted(self.sums)
        local = [loss for _, loss in self.pending] + [self.sums[k] for k in keys]
        local += [self.steady_tokens, self.tokens, float(stop_requested)]
        vec = torch.stack([torch.as_tensor(v, device=accel.device).to(torch.float64).reshape(()) for v in local])
        if world > 1:
            vec = accel.reduce(vec, reduction="sum")
        values = vec.tolist()
        losses, sums = values[: len(self.pending)], values[len(self.pending) : len(self.pending) + len(keys)]
        finite = True
        for (step, _), loss in zip(self.pending, losses, strict=True):
            finite = self.guard(step, loss)
            if finite:
                self.window_losses.append(loss)
                self.last_loss = loss
        for key, total in zip(keys, sums, strict=True):
            entry = self.window.setdefault(key, [0.0, 0])
            entry[0] += total
            entry[1] += self.counts[key] * world
        self.window_clock.tokens += values[-3]
        self.state.steady_tokens += values[-3]
        self.state.tokens_seen += values[-2]
        self.pending, self.sums, self.counts, self.tokens, self.steady_tokens = [], {}, {}, 0.0, 0.0
        return finite, values[-1] > 0

    def guard(self, step: int, loss: float) -> bool:
        """Stop (or, with --nan-policy skip, report False) on a non-finite loss; stop when the smoothed loss
        has grown past --divergence-factor x its best. Every process sees the same summed loss."""
        state, cfg = self.state, self.cfg
        if not math.isfinite(loss):
            if cfg.nan_policy == "skip":
                return False
            raise TrainingStopped(
                f"loss became {loss} at step {step} (epoch {state.epoch}); training stopped and "
                f"{self.went_bad(step, loss)}; lower --lr or pass --nan-policy skip"
            )
        if not cfg.divergence_factor:
            self.passed_step = step
            return True
        state.ema_steps += 1
        state.loss_ema = SMOOTHING * state.loss_ema + (1 - SMOOTHING) * loss
        smoothed = state.loss_ema / (1 - SMOOTHING**state.ema_steps)
        best = state.best_smoothed_loss
        if best is None or smoothed < best:
            state.best_smoothed_loss = best = smoothed
        if best > 0 and smoothed > cfg.divergence_factor * best:
            self.diverged = {"step": step, "loss": loss, "smoothed_loss": smoothed, "best_smoothed_loss": best}
            raise Diverged(
                f"diverged at step {step}: smoothed loss {smoothed:.4g} > {cfg.divergence_factor:g} x its "
                f"best {best:.4g} (loss {loss:.4g}); training stopped and {self.went_bad(step, loss)}; "
                f"lower --lr, or raise --divergence-factor (0 turns the check off)"
            )
        self.passed_step = step
        return True

    def good_checkpoint(self) -> Path | None:
        """The newest checkpoint whose weights gave a finite, non-diverged loss at the step after it."""
        good = [c for c in self.run.checkpoints() if checkpoint_step(c) < self.passed_step]
        return good[-1] if good else None

    def went_bad(self, step: int, loss: float) -> str:
        """Mark the checkpoints that hold the weights which gave the bad loss of `step` (resume skips them) and
        name the newest good one."""
        good = self.good_checkpoint()
        if self.accel.is_main_process:
            for ckpt in self.run.checkpoints():
                if good is None or checkpoint_step(ckpt) > checkpoint_step(good):
                    atomic_write_json(ckpt / WENT_BAD_FILE, {"bad_loss": loss, "at_step": step})
        if good is not None:
            return f"the newest good checkpoint is {good}"
        if step == 1:
            return "no good checkpoint: the initial weights already gave this loss"
        return f"no good checkpoint: the weights went bad at step {step - 1}"

    # -- what the history and metrics.json get ------------------------------------------------------

    def train_window(self) -> tuple[dict[str, float], dict[str, float]]:
        """(the window's mean loss and mean logs, its throughput); a new window starts."""
        means: dict[str, float] = {}
        if self.window_losses:
            means["loss"] = sum(self.window_losses) / len(self.window_losses)
        for key, (total, count) in self.window.items():
            means[key] = total / count
        rates = self.window_clock.rates(self.accel.num_processes)
        self.window_losses, self.window, self.window_clock = [], {}, Throughput()
        return means, rates

    def throughput(self) -> dict[str, Any]:
        """Steady-state rates over the steps after each process's first WARMUP_STEPS; a run too short to have
        any falls back to all its steps (steady_steps says which)."""
        state = self.state
        steps = state.steady_steps
        clock = Throughput(state.steady_seconds, state.steady_cpu_seconds, state.steady_samples, state.steady_tokens)
        if steps == 0:
            steps = state.step
            clock = Throughput(state.train_seconds, state.train_cpu_seconds, state.samples_seen, state.tokens_seen)
        return {**clock.rates(self.accel.num_processes), "steady_steps": steps}


class _Loop:
    """The loop: epochs of optimizer steps, and what a step boundary may bring (a history line, an eval, a
    checkpoint, a stop). Its bookkeeping is the meter's, so one step reads on one screen."""

    def __init__(self, task: Task, cfg: TrainConfig, run: Run, parts: Setup) -> None:
        self.task, self.cfg, self.run, self.accel, self.shards = task, cfg, run, parts.accel, parts.shards
        self.model, self.optimizer, self.scheduler = parts.model, parts.optimizer, parts.scheduler
        self.state, self.total_steps, self.val_loader = parts.state, parts.total_steps, parts.val_loader
        self.train_set, self.params, self.trained = parts.train_set, (parts.trainable, parts.total), parts.trained
        self.meter = _Meter(cfg, parts.state, run, parts.accel, parts.total_steps, parts.val_loader is not None)
        self.stop_requested = False  # set by the first Ctrl-C; honoured at the next step boundary
        self.last_plot = time.perf_counter()  # a run shorter than PLOT_EVERY_S draws loss.png once, at the end

    def train(self) -> None:
        cfg, state = self.cfg, self.state
        progress = TrainProgress(self.total_steps, state.step, enabled=self.accel.is_main_process)
        with progress, self.ctrl_c_finishes_the_step():
            self.progress = progress
            self.model.train()  # a from_pretrained or freshly resumed model arrives in eval mode (dropout off)
            while state.step < self.total_steps and not self.should_stop:
                plan = epoch_plan(self.task, self.train_set, cfg, state.epoch, self.accel)
                self.run_epoch(plan)
                if state.batches_seen >= len(plan):
                    state.epoch += 1
                    state.batches_seen = 0

    @property
    def should_stop(self) -> bool:
        return bool(self.cfg.early_stop_patience) and self.state.bad_evals >= self.cfg.early_stop_patience

    def run_epoch(self, plan: list[list[list[int]]]) -> None:
        cfg, state = self.cfg, self.state
        micro_batches = [batch for step in plan[state.batches_seen :] for batch in step]
        loader = DataLoader(
            self.train_set,
            batch_sampler=micro_batches,
            collate_fn=self.task.collate,
            num_workers=cfg.num_workers,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        batches = iter(loader)
        while state.batches_seen < len(plan) and state.step < self.total_steps and not self.should_stop:
            steady = self.meter.start_step()
            indices = plan[state.batches_seen]
            self.step([next(batches) for _ in indices], indices, steady, state.batches_seen + 1 >= len(plan))

    def step(self, batches: list[Any], indices: list[list[int]], steady: bool, end_of_epoch: bool) -> None:
        """One optimizer step: forward and backward its micro-batches; when the step is logged, evaluated or
        saved, read the device values (the guards check the losses); update; then log, evaluate, save as due."""
        state, meter, accel = self.state, self.meter, self.accel
        step_loss, logs = accumulate_step(self.task, self.model, accel, batches)
        meter.track(step_loss, logs, [len(i) for i in indices], steady)
        finite, stop = True, self.stop_requested and accel.num_processes == 1
        if meter.sync_due(state.step + 1, end_of_epoch) or stop:
            finite, stop_any = meter.sync(self.stop_requested)
            stop = stop or stop_any
        if not finite:  # --nan-policy skip
            self.optimizer.zero_grad(set_to_none=True)
            state.skipped_steps += 1
            state.batches_seen += 1
            warn(f"non-finite loss at step {state.step + 1}; step skipped ({state.skipped_steps} so far)")
            return
        if self.cfg.max_grad_norm:
            accel.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.batches_seen += 1
        meter.stepped()
        self.after_step(end_of_epoch)
        meter.finish_step(sum(len(i) for i in indices), steady)
        if stop:
            self.checkpoint(next_epoch=end_of_epoch)
            raise _StopRequested

    @contextlib.contextmanager
    def ctrl_c_finishes_the_step(self) -> Iterator[None]:
        """The first Ctrl-C lets the current step finish, then a checkpoint is saved at that boundary
        (so resuming is exact); a second Ctrl-C raises KeyboardInterrupt at once. Several processes
        agree on stopping when they next read the device values (a logged step at the latest)."""
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

    def after_step(self, end_of_epoch: bool) -> None:
        cfg, state = self.cfg, self.state
        if state.step % cfg.log_every == 0 or state.step == self.total_steps:
            means, rates = self.meter.train_window()
            self.log(
                {
                    "kind": "train",
                    "step": state.step,
                    "epoch": state.epoch,
                    **means,
                    "lr": self.scheduler.get_last_lr()[0],
                    **rates,
                }
            )
        self.progress.update(
            state.step, epoch=state.epoch, loss=self.meter.last_loss, lr=self.scheduler.get_last_lr()[0]
        )
        if self.val_loader is not None and _due(state.step, cfg.eval_every, end_of_epoch):
            self.evaluate()
        if _due(state.step, cfg.save_every, end_of_epoch):
            self.checkpoint(next_epoch=end_of_epoch)

    def log(self, record: dict[str, Any]) -> None:
        """One history line; with --report-to, its scalars also go to the tracker as KIND/KEY."""
        self.run.log(record)
        if self.accel.log_with:
            scalars = {
                f"{record['kind']}/{k}": v
                for k, v in record.items()
                if k not in ("kind", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            self.accel.log(scalars, step=record["step"])

    def evaluate(self) -> None:
        state, cfg = self.state, self.cfg
        eval_start, eval_cpu = time.perf_counter(), time.process_time()
        with isolated_rng():
            self.model.eval()
            with torch.no_grad(), self.accel.autocast():
                metrics = self.task.evaluate(self.model, self.val_loader, self.accel)
            self.samples()  # still in eval mode: samples without dropout, and BatchNorm statistics left as
            # evaluated (and as the other ranks have them)
            self.model.train()
        state.last_eval_step = state.step
        state.last_eval = metrics
        self.log({"kind": "eval", "step": state.step, "epoch": state.epoch, **metrics})
        if self.run.writer and state.step < self.total_steps and time.perf_counter() - self.last_plot >= PLOT_EVERY_S:
            plots.loss_curves(self.run.history(), self.run.plots_dir / "loss.png")  # fit draws the last one
            self.last_plot = time.perf_counter()
        self.track_best(metrics)
        self.progress.note(" ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))
        self.meter.exclude(time.perf_counter() - eval_start, time.process_time() - eval_cpu)
        if cfg.early_stop_patience and self.should_stop:
            info(f"early stop: {cfg.monitor} has not improved for {cfg.early_stop_patience} evaluations")

    def samples(self) -> None:
        """Task.on_eval on the main process. A sharded model is gathered first, by every process, and only
        when the task draws something."""
        if self.shards is not None and type(self.task).on_eval is Task.on_eval:
            return
        with whole_model(self.accel, self.model, self.shards) as model:
            if model is not None:
                self.task.on_eval(model, self.run, self.state.step)

    def track_best(self, metrics: dict[str, float]) -> None:
        cfg, state = self.cfg, self.state
        if cfg.monitor not in metrics:
            if cfg.early_stop_patience or cfg.monitor != "val_loss":
                raise ConfigError(
                    f"--monitor {cfg.monitor} is not an eval metric; choose one of {', '.join(sorted(metrics))}"
                )
            return
        value = float(metrics[cfg.monitor])
        better = state.best_value is None or (
            value < state.best_value if cfg.monitor_mode == "min" else value > state.best_value
        )
        if better:
            state.best_value, state.bad_evals = value, 0
            state.best_eval = {"step": state.step, **metrics}
        else:
            state.bad_evals += 1

    def checkpoint(self, next_epoch: bool = False) -> None:
        """Save a resumable checkpoint at the current step boundary (all processes take part)."""
        start, start_cpu, state = time.perf_counter(), time.process_time(), self.state
        saved = TrainState(**asdict(state))
        if next_epoch:  # the epoch is done: resume starts the next one
            saved.epoch, saved.batches_seen = state.epoch + 1, 0
        keep = self.meter.good_checkpoint()
        if self.shards is None:
            save_checkpoint(self.accel, self.run, saved, self.scheduler, self.cfg.keep_last, self.trained, keep=keep)
        else:
            save_sharded_checkpoint(
                self.accel,
                self.run,
                saved,
                self.scheduler,
                self.cfg.keep_last,
                self.trained,
                self.shards,
                self.optimizer,
                keep=keep,
            )
        self.meter.exclude(time.perf_counter() - start, time.process_time() - start_cpu)

    def summary(self, status: str) -> dict[str, Any]:
        state, (trainable, total) = self.state, self.params
        metrics: dict[str, Any] = {
            "status": status,
            "group": self.run.group,
            **self.task.summary(),
            "steps": state.step,
            "epochs": state.epoch,
            "trainable_params": trainable,
            "total_params": total,
            "trainable_pct": 100.0 * trainable / max(total, 1),
            "train_seconds": state.train_seconds,
            "train_cpu_seconds": state.train_cpu_seconds,
            **self.meter.throughput(),
            "peak_memory_mb": peak_memory_mb(),
            "skipped_items": int(self.task.skipped_items),
            "skipped_steps": state.skipped_steps,
            "processes": self.accel.num_processes,
            "sharding": "fsdp" if self.shards is not None else "none",
            "param_memory_mb": sharding.parameter_bytes(self.model) / 2**20,  # this process's (its shards)
        }
        if self.meter.diverged:
            metrics["diverged"] = self.meter.diverged
        final_train = [r["loss"] for r in self.run.history("train")[-1:] if "loss" in r] if self.run.writer else []
        if final_train:
            metrics["train_loss"] = final_train[0]
        metrics.update({k: v for k, v in state.last_eval.items()})
        metrics["final"] = {"step": state.last_eval_step, **state.last_eval}
        metrics["best"] = {"monitor": self.cfg.monitor, **state.best_eval}
        return metrics


@dataclass
class Throughput:
    """Wall and CPU seconds of some training steps with what they trained: `samples` this process's examples,
    `tokens` all processes'."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    samples: int = 0
    tokens: float = 0.0

    def add(self, seconds: float, cpu_seconds: float, samples: int) -> None:
        self.seconds += seconds
        self.cpu_seconds += cpu_seconds
        self.samples += samples

    def rates(self, processes: int) -> dict[str, float]:
        """samples/tokens per second (all processes, wall) and per CPU-second (this process's examples over its
        own CPU time: the same figure for every process when they share the work evenly); {} for no time."""
        if self.seconds <= 0 or self.samples == 0:
            return {}
        out = {"samples_per_second": self.samples * processes / self.seconds}
        if self.cpu_seconds > 0:
            out["samples_per_cpu_second"] = self.samples / self.cpu_seconds
        if self.tokens:
            out["tokens_per_second"] = self.tokens / self.seconds
            if self.cpu_seconds > 0:
                out["tokens_per_cpu_second"] = self.tokens / processes / self.cpu_seconds
        return out


def accumulate_step(
    task: Task, model: nn.Module, accel: Accelerator, batches: list[Any]
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Forward and backward one optimizer step's micro-batches (collated, on the host): each backpropagates
    its mean loss x its items / the items of the whole step on all processes, so the gradients are those
    of one batch holding them all. Returns (this process's share of the step loss, on the device; each
    micro-batch's logs). Gradients are synced only on the last micro-batch."""
    counts = [int(task.num_items(batch)) for batch in batches]  # on the host, before any backward
    world = accel.num_processes
    scale: Any = 1.0 / max(sum(counts), 1)
    if world > 1:  # x processes: DDP and FSDP average the gradients over them
        items = accel.reduce(torch.tensor(float(sum(counts)), device=accel.device), reduction="sum")
        scale = world / items.clamp_min(1.0)
    step_loss: Any = None
    logs = []
    for i, batch in enumerate(batches):  # (no_sync does nothing to a sharded model: see dlkit.core.sharding)
        with contextlib.nullcontext() if i == len(batches) - 1 else accel.no_sync(model):
            with accel.autocast():  # also where a task calls submodules, not the prepared model's forward
                loss, entry = split_step_output(task.training_step(model, send_to_device(batch, accel.device)))
            whole = world == 1 and len(batches) == 1  # the step is this one batch: its mean is the step's loss
            weighted = loss if whole else loss * (counts[i] * scale)
            accel.backward(weighted)
        part = weighted.detach()
        part = part.float() if part.dtype != torch.float32 else part
        part = part / world if world > 1 else part  # summed over processes when read
        step_loss = part if step_loss is None else step_loss + part
        logs.append(entry)
    return step_loss, logs


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else float(value)


class _StopRequested(Exception):
    """Ctrl-C was honoured at a step boundary and a checkpoint was saved."""


def _due(step: int, every: int, end_of_epoch: bool) -> bool:
    return step % every == 0 if every else end_of_epoch


# -- resume checks ---------------------------------------------------------------------------------


def check_resume(saved: dict[str, Any], cfg: TrainConfig) -> None:
    """Refuse a --resume whose flags would change the batch plan or the model, naming each key."""
    refused, _ = resume_changes(saved, cfg)
    if refused:
        raise ConfigError(_refusal(refused))


def check_resume_data(saved: dict[str, Any], data: dict[str, Any]) -> None:
    """Refuse a --resume whose training data (as the engine sees it) or number of processes changed."""
    before = saved.get(META_KEY, {}).get("data") or {}
    changed = {k: (before[k], v) for k, v in data.items() if k in before and before[k] != v}
    if changed:
        raise ConfigError(_refusal({"data " + k if k != "processes" else k: v for k, v in changed.items()}))


def _refusal(changed: dict[str, tuple[Any, Any]]) -> str:
    what = "; ".join(f"{flag_name(k)} {old!r} -> {new!r}" for k, (old, new) in changed.items())
    return (
        f"--resume: this run was started with other settings that change its batches or model ({what}); "
        f"resume with the original values, or start a new run"
    )


def record_resume(run: Run, cfg: TrainConfig, saved: dict[str, Any], step: int) -> None:
    """config.json takes the new safe values; its `_dlkit.history` lists every resume and what changed."""
    _, allowed = resume_changes(saved, cfg)
    if allowed:
        info("resume changes " + "; ".join(f"{flag_name(k)} {old!r} -> {new!r}" for k, (old, new) in allowed.items()))
    if not run.writer:
        return
    meta = dict(saved.get(META_KEY, {}))
    meta["history"] = [
        *meta.get("history", []),
        {
            "resumed_at_step": step,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": command_text(cfg),
            "changed": {k: {"old": old, "new": new} for k, (old, new) in allowed.items()},
        },
    ]
    atomic_write_json(run.config_path, {**saved, **saved_dict(cfg), META_KEY: meta})


def command_text(cfg: TrainConfig) -> str | None:
    import shlex

    return shlex.join(["dlkit", *cfg.command_line]) if cfg.command_line is not None else None


def resume_command(run: Run, cfg: TrainConfig) -> str:
    import shlex

    if cfg.command_line is None:  # called from Python: the saved config.json reproduces the settings
        return shlex.join(["dlkit", run.group, "train", "--config", str(run.config_path), "--resume"])
    args = [a for a in cfg.command_line if a not in ("--overwrite", "--resume")]
    if "--output-dir" not in args:
        args += ["--output-dir", str(run.dir)]
    return shlex.join(["dlkit", *args, "--resume"])


# -- building blocks (each usable on its own) ----------------------------------------------------


def build_accelerator(cfg: TrainConfig, run: Run | None = None) -> Accelerator:
    cuda = torch.cuda.is_available()
    if cfg.precision == "fp16" and not cuda:
        raise ConfigError("--precision fp16 needs a CUDA GPU; use --precision bf16 or no on this machine")
    if isinstance(cfg, ShardingConfig) and cfg.sharding == "fsdp":
        sharding.check_precision(cfg.precision)
        sharding.init_process_group(cuda)
    _cache_lomo_lookup()
    names = tracker_names(cfg.report_to)
    check_installed(names)
    trackers = {"log_with": build_trackers(names, run), "project_dir": str(run.dir)} if run and names else {}
    with sharding.accelerate_unaware():
        try:
            accel = Accelerator(cpu=not cuda, mixed_precision=cfg.precision, **trackers)
        except ValueError as exc:  # a second fit in one process (notebook, tests) asking for another precision
            if "already been initialized" not in str(exc):
                raise
            _reset_accelerator_state(cfg.precision)
            accel = Accelerator(cpu=not cuda, mixed_precision=cfg.precision, **trackers)
    if (refusal := sharding_refusal(accel.distributed_type)) is not None:
        raise ConfigError(refusal)
    if (message := launch_warning(accel.num_processes)) is not None:
        warn(message)
    return accel


def _accelerate_known() -> bool:
    """Whether the installed accelerate is a version whose private state the shims here were checked against."""
    import accelerate
    from packaging.version import Version

    version = Version(accelerate.__version__).release[:2]
    return ACCELERATE_TESTED[0] <= version < ACCELERATE_TESTED[1]


def _reset_accelerator_state(precision: str) -> None:
    """Accelerate keeps one AcceleratorState per process and refuses another mixed precision; it has no
    public way to start over, so on the versions checked (ACCELERATE_TESTED) clear it as its own tests do."""
    from accelerate.state import AcceleratorState

    if not _accelerate_known() or not hasattr(AcceleratorState, "_reset_state"):
        import accelerate

        raise ConfigError(
            f"--precision {precision}: accelerate {accelerate.__version__} cannot change the "
            f"precision within one process; run this training in a new process"
        )
    AcceleratorState._reset_state()


def _cache_lomo_lookup() -> None:
    """Accelerate's optimizer wrapper searches the disk for the `lomo_optim` package twice per step
    (importlib find_spec + metadata, ~0.3 ms: 8% of a small model's step on CPU, measured with
    benchmarks/engine_overhead.py). The answer cannot change while the process runs, so ask once.
    Only on the accelerate versions checked (ACCELERATE_TESTED); elsewhere the lookup is left alone."""
    import functools

    import accelerate.optimizer

    lookup = getattr(accelerate.optimizer, "is_lomo_available", None)
    if not _accelerate_known() or not callable(lookup) or hasattr(lookup, "cache_info"):
        return
    accelerate.optimizer.is_lomo_available = functools.cache(lookup)


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
    # torch's fused AdamW (CPU and CUDA) updates every tensor in one kernel: the same algorithm, and on a
    # small model it is a few percent of the step (1.9 -> 0.5 ms for charrnn's 4-layer GPT on one CPU thread)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused or None)


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


def step_plan(task: Task, dataset: SizedDataset, cfg: TrainConfig, epoch: int, world: int) -> list[list[int]]:
    """All processes' batches of `epoch`, one per optimizer step (batch x accum x processes examples):
    a pure function of (seed, epoch), so resume can rebuild it."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    return task.batch_plan(dataset, cfg.batch_size * cfg.grad_accum * world, gen)


def split_step(batch: list[int], world: int, accum: int, batch_size: int) -> list[list[list[int]]]:
    """One step's examples as `world` lists of micro-batches, contiguous and as equal as can be (a full
    step gives each process `accum` batches of `batch_size`); [] when there are fewer examples than processes."""
    micro = min(accum, math.ceil(len(batch) / (world * batch_size)), len(batch) // world)
    if micro == 0:
        return []
    parts = np.array_split(np.asarray(batch, dtype=np.int64), world * micro)
    return [[p.tolist() for p in parts[r * micro : (r + 1) * micro]] for r in range(world)]


def epoch_plan(
    task: Task, dataset: SizedDataset, cfg: TrainConfig, epoch: int, accel: Accelerator
) -> list[list[list[int]]]:
    """This process's micro-batches of each optimizer step of `epoch`; every process takes the same
    number of steps and of micro-batches per step."""
    world, rank = accel.num_processes, accel.process_index
    steps = (split_step(b, world, cfg.grad_accum, cfg.batch_size) for b in step_plan(task, dataset, cfg, epoch, world))
    return [parts[rank] for parts in steps if parts]


def plan_fingerprint(plan: list[list[int]]) -> str:
    """A short hash of an epoch's batches: changes when the examples or their grouping change."""
    return hashlib.sha1(json.dumps(plan).encode()).hexdigest()[:16]


def eval_loader(
    dataset: SizedDataset, collate: Callable, batch_size: int, accel: Accelerator, sharded: bool = False
) -> DataLoader:
    """This process's contiguous-free share of the val set (every world-th example), no padding,
    so sums reduced over processes equal the single-process numbers. A sharded model runs a collective in
    every forward, so then every process gets the same number of batches (sharding.eval_batches)."""
    world, rank = accel.num_processes, accel.process_index
    if sharded:
        plan = sharding.eval_batches(len(dataset), world, rank, batch_size)
    else:
        indices = list(range(rank, len(dataset), world))
        plan = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
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


def mean_loss(task: Task, model: nn.Module, loader: Any, accel: Accelerator) -> float:
    """Item-weighted mean of `training_step` losses over the whole val set (all processes): the loss
    of one batch holding the whole set, counting items as `task.num_items` does."""

    def losses() -> Iterator[tuple[torch.Tensor, int]]:
        for batch in loader:
            items = task.num_items(batch)  # before the step, which may take keys out of the batch
            yield split_step_output(task.training_step(model, batch))[0], items

    return item_weighted_mean(losses(), accel)


def item_weighted_mean(losses: Iterable[tuple[torch.Tensor, int]], accel: Accelerator | None = None) -> float:
    """The mean of (batch mean loss, items in the batch) pairs weighted by the items, summed in float64 on the
    losses' device and read once; with `accel` over several processes, summed over all of them."""
    total: torch.Tensor | None = None
    for loss, items in losses:
        term = torch.stack([loss.detach().double() * items, loss.new_tensor(items, dtype=torch.float64)])
        total = term if total is None else total + term
    if total is None:
        total = torch.zeros(2, dtype=torch.float64, device=accel.device if accel is not None else "cpu")
    if accel is not None and accel.num_processes > 1:
        total = accel.reduce(total, reduction="sum")
    return (total[0] / total[1].clamp_min(1e-12)).item()


@contextlib.contextmanager
def whole_model(accel: Accelerator, model: nn.Module, shards: sharding.Sharded | None) -> Iterator[nn.Module | None]:
    """The model as a Task saves and samples it, on the main process (None on the others): unwrapped from
    DDP, or gathered from its shards onto the CPU, which every process must enter (a collective)."""
    if shards is None:
        yield accel.unwrap_model(model) if accel.is_main_process else None
        return
    with shards.gathered() as full:
        yield full


def gather(accel: Accelerator, items: list[Any]) -> list[Any]:
    """All processes' Python objects, in one list (for metrics needing every prediction)."""
    return gather_object(items) if accel.num_processes > 1 else items


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


MODEL_FILE = "model.safetensors"  # in a checkpoint: the trained tensors, by name


@dataclass
class TrainedTensors:
    """What a checkpoint keeps of the model: the tensors that train, by name (the model unwrapped), and what
    rebuilds the rest: the base's source and a fingerprint of the frozen parameters."""

    model: nn.Module
    names: list[str]
    source: str
    fingerprint: str

    @classmethod
    def of(cls, model: nn.Module, names: list[str], source: str) -> TrainedTensors:
        own = named_tensors(model)
        unknown = [n for n in names if n not in own]
        if unknown:
            raise TypeError(f"trained_names() names tensors the model does not have: {', '.join(unknown[:3])}")
        return cls(model, list(names), source, frozen_fingerprint(model, set(names)))

    def tensors(self) -> dict[str, torch.Tensor]:
        own = named_tensors(self.model)
        out: dict[str, torch.Tensor] = {}
        storages: set[int] = set()
        for name in self.names:
            tensor = own[name].detach()
            storage = tensor.untyped_storage().data_ptr()
            # safetensors refuses tensors sharing memory; one sharing a saved tensor's storage is stored as a copy
            out[name] = tensor.clone() if storage in storages else tensor.contiguous()
            storages.add(storage)
        return out

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "frozen_fingerprint": self.fingerprint, "trained_tensors": len(self.names)}

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.cpu() for k, v in self.tensors().items()}, str(path))

    def load(self, path: Path) -> None:
        """Copy the tensors saved in `path` into the model; a file that misses one of ours, or holds one the
        model lacks or of another shape, is refused naming it (a checkpoint of another model or method)."""
        self.copy_in(load_state_dict(path), path)

    def copy_in(self, saved: dict[str, torch.Tensor], path: Path) -> None:
        own = named_tensors(self.model)
        missing = [n for n in self.names if n not in saved]
        unknown = [n for n in saved if n not in own]
        wrong = [n for n, t in saved.items() if n in own and t.shape != own[n].shape]
        for problem, names in (
            ("lacks", missing),
            ("holds tensors the model does not have:", unknown),
            ("holds tensors of another shape:", wrong),
        ):
            if names:
                raise RunError(f"{path} {problem} {', '.join(names[:3])}" + (" ..." if len(names) > 3 else ""))
        with torch.no_grad():
            for name, tensor in saved.items():
                own[name].copy_(tensor)

    def check_base(self, saved: dict[str, Any], ckpt: Path) -> None:
        """Refuse to resume on frozen weights other than those the checkpoint was trained on."""
        before = saved.get("frozen_fingerprint")
        if before is not None and before != self.fingerprint:
            raise ConfigError(
                f"--resume: the frozen weights of {self.source} are not those {ckpt} was trained on "
                f"(fingerprint {self.fingerprint} vs {before}, from {saved.get('source')}); resume "
                "with the same base model"
            )


TRAINED_FILE = "trained.safetensors"  # in a final model folder: the tensors that trained; the rest is the base
TRAINED_INFO = "trained.json"  # ... and which base, with the fingerprint of its frozen parameters


def save_trained(model: nn.Module, names: list[str], source: str, folder: Path) -> None:
    """A final model as what trained: the tensors `names`, and the base they go onto (its source and the
    fingerprint of everything else). For methods that leave most of a base frozen."""
    trained = TrainedTensors.of(model, names, source)
    folder.mkdir(parents=True, exist_ok=True)
    trained.save(folder / TRAINED_FILE)
    atomic_write_json(folder / TRAINED_INFO, trained.describe())


def is_trained_folder(folder: Path) -> bool:
    return (folder / TRAINED_INFO).is_file()


def trained_info(folder: Path) -> dict[str, Any]:
    """What `save_trained` recorded: the base's source ("source") and its fingerprint."""
    info_path = folder / TRAINED_INFO
    try:
        return json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{info_path} is unreadable ({str(exc).splitlines()[0][:120]})") from None


def load_trained_tensors(model: nn.Module, folder: Path) -> dict[str, Any]:
    """Put what `save_trained` wrote onto `model` (the base rebuilt from its source, the method applied);
    refuses, in one line, base weights other than those it was trained on. Returns the saved description."""
    saved = trained_info(folder)
    tensors = load_state_dict(folder / TRAINED_FILE)
    own = named_tensors(model)
    trained = TrainedTensors.of(model, [n for n in tensors if n in own], saved.get("source", "?"))
    if trained.fingerprint != saved.get("frozen_fingerprint"):
        raise RunError(
            f"{folder} was trained on other weights than those {trained.source} holds now (fingerprint "
            f"{saved.get('frozen_fingerprint')} vs {trained.fingerprint}); load it on the base it was "
            "trained on"
        )
    trained.copy_in(tensors, folder / TRAINED_FILE)
    return saved


def named_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters (tied ones once) and buffers by name: what `Task.trained_names` chooses from."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def tensor_digest(tensor: torch.Tensor) -> bytes:
    """A digest of a tensor's exact bytes: any change to any element changes it."""
    raw = tensor.detach().contiguous().view(torch.uint8).cpu().numpy()
    return hashlib.blake2b(raw.tobytes(), digest_size=16).digest()


def frozen_fingerprint(model: nn.Module, trained: set[str]) -> str:
    """A digest of every parameter outside `trained`, with its name and shape. Floating values are read as bf16,
    so the same base loaded in fp32 or bf16 (or upcast for training) has one fingerprint; CRC-32 reads ~2 GB/s,
    a few seconds for a 2B-parameter base."""
    digest = hashlib.sha1(usedforsecurity=False)
    for name, param in model.named_parameters():
        if name in trained:
            continue
        crc = 0
        for chunk in param.detach().reshape(-1).split(1 << 24):  # bounded host memory for a large tensor
            if chunk.is_floating_point() and chunk.dtype != torch.bfloat16:
                chunk = chunk.to(torch.bfloat16)
            crc = zlib.crc32(chunk.contiguous().view(torch.uint8).cpu().numpy(), crc)
        digest.update(f"{name}:{tuple(param.shape)}:{crc};".encode())
    return digest.hexdigest()[:16]


def leave_model_to(trained: TrainedTensors, accel: Accelerator) -> None:
    """Accelerate's save_state/load_state keep the optimizer, scaler and RNG states; the model's tensors go
    through `trained` instead, so Accelerate neither writes the whole model nor expects it back."""
    accel.register_save_state_pre_hook(lambda models, weights, output_dir: weights.clear())
    accel.register_load_state_pre_hook(lambda models, input_dir: models.clear())


def train_in_fp32(model: nn.Module, precision: str) -> None:
    """Trainable parameters become fp32 (the optimizer's updates then survive); with --precision no every
    floating parameter and buffer does, as the model then computes in fp32. Under bf16/fp16 autocast the
    frozen parameters keep their dtype (half the memory for a bf16 checkpoint)."""
    low = [p for p in model.parameters() if p.is_floating_point() and p.dtype != torch.float32]
    if not low:
        return
    frozen_low = sum(p.numel() for p in low if not p.requires_grad)
    if precision == "no":
        if frozen_low:
            info(
                f"the model holds {low[0].dtype} weights: with --precision no it computes in fp32 (frozen weights "
                f"too); --precision bf16 keeps its {frozen_low:,} frozen parameters in {low[0].dtype}"
            )
        model.float()
        return
    for param in low:
        if param.requires_grad:
            param.data = param.data.float()


def save_checkpoint(
    accel: Accelerator,
    run: Run,
    state: TrainState,
    scheduler: Any,
    keep_last: int,
    trained: TrainedTensors,
    keep: Path | None = None,
) -> Path:
    """The trained tensors (model.safetensors), Accelerate's state (optimizer, scaler, RNG), our counters, the
    scheduler and the base's fingerprint into step_N, written to a temp folder and renamed into place. The
    scheduler goes to JSON rather than through Accelerate's pickle, so everything is loaded back with
    weights_only=True. Checkpoints beyond the newest `keep_last` are deleted, except `keep` (the newest good
    one, until a newer one is known good)."""

    def write(folder: Path) -> None:
        accel.save_state(str(folder), safe_serialization=True)
        if accel.is_main_process:
            trained.save(folder / MODEL_FILE)

    return _write_checkpoint(accel, run, state, scheduler, keep_last, keep, trained, write)


def save_sharded_checkpoint(
    accel: Accelerator,
    run: Run,
    state: TrainState,
    scheduler: Any,
    keep_last: int,
    trained: TrainedTensors,
    shards: sharding.Sharded,
    optimizer: torch.optim.Optimizer,
    keep: Path | None = None,
) -> Path:
    """save_checkpoint for a model sharded with --sharding fsdp: Accelerate's state holds the RNG states alone
    (it prepared neither the model nor the optimizer), and every process writes its shard of the trainable
    parameters and of the optimizer state into step_N/shards (torch.distributed.checkpoint) instead of
    model.safetensors; the base's source and fingerprint are kept as in any checkpoint."""

    def write(folder: Path) -> None:
        accel.save_state(str(folder))
        shards.save(optimizer, folder)

    return _write_checkpoint(accel, run, state, scheduler, keep_last, keep, trained, write)


def _write_checkpoint(
    accel: Accelerator,
    run: Run,
    state: TrainState,
    scheduler: Any,
    keep_last: int,
    keep: Path | None,
    trained: TrainedTensors,
    write: Callable[[Path], None],
) -> Path:
    final = run.checkpoint_path(state.step)
    tmp = final.with_name(final.name + ".tmp")
    if accel.is_main_process:
        _rmtree(tmp)
    accel.wait_for_everyone()
    write(tmp)
    accel.wait_for_everyone()
    if accel.is_main_process:
        atomic_write_json(
            tmp / STATE_FILE, {**asdict(state), "scheduler": scheduler.state_dict(), "model": trained.describe()}
        )
        _rmtree(final)
        tmp.rename(final)
        for old in run.checkpoints()[:-keep_last]:
            if old != keep:
                _rmtree(old)
    accel.wait_for_everyone()
    return final


def restore(accel: Accelerator, run: Run, scheduler: Any, trained: TrainedTensors) -> TrainState:
    """Load the newest readable checkpoint; an unreadable one is reported and the previous one used."""

    def load(folder: Path) -> None:
        accel.load_state(str(folder))  # skips RNG states it cannot read, saying nothing
        trained.load(folder / MODEL_FILE)

    return _restore_newest(accel, run, scheduler, trained, load)


def restore_sharded(
    accel: Accelerator,
    run: Run,
    scheduler: Any,
    trained: TrainedTensors,
    shards: sharding.Sharded,
    optimizer: torch.optim.Optimizer,
) -> TrainState:
    """restore for a checkpoint of save_sharded_checkpoint, onto as many processes as wrote it (a resume
    with another number is refused before: it would change the batches)."""

    def load(folder: Path) -> None:
        shards.load(optimizer, folder)
        accel.load_state(str(folder))  # the RNG states, last: nothing draws from them after this

    return _restore_newest(accel, run, scheduler, trained, load)


def _restore_newest(
    accel: Accelerator, run: Run, scheduler: Any, trained: TrainedTensors, load: Callable[[Path], None]
) -> TrainState:
    candidates = run.checkpoints()
    for ckpt in reversed(candidates):
        if (ckpt / WENT_BAD_FILE).is_file():
            info(f"skipping {ckpt.name}: its weights gave a non-finite or diverged loss")
            continue
        try:
            saved = json.loads((ckpt / STATE_FILE).read_text())
        except Exception as exc:  # missing, truncated
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            warn(f"checkpoint {ckpt} is unreadable ({reason}); trying the previous one")
            continue
        trained.check_base(saved.pop("model", {}), ckpt)
        try:
            scheduler_state = saved.pop("scheduler")
            known = {f.name for f in dataclasses.fields(TrainState)}  # counters of older versions are dropped
            state = TrainState(**{k: v for k, v in saved.items() if k in known})
            rng_problem = _unreadable_rng_state(ckpt, accel.process_index)
            load(ckpt)  # Accelerate's load_state skips RNG states it cannot read, saying nothing
            scheduler.load_state_dict(scheduler_state)
        except Exception as exc:  # truncated file, bad pickle, shape mismatch...
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            warn(f"checkpoint {ckpt} is unreadable ({reason}); trying the previous one")
            continue
        if ckpt != candidates[-1]:
            info(f"resuming from {ckpt.name} instead")
        if rng_problem:
            warn(
                f"{rng_problem}; resuming with fresh random states, so this resume is not exact (dropout and "
                "sampling differ from an uninterrupted run)"
            )
        return state
    raise RunError(f"--resume: no readable checkpoint with good weights in {run.checkpoints_dir}; start a new run")


def _unreadable_rng_state(ckpt: Path, process_index: int) -> str | None:
    """Why this process's RNG file in `ckpt` cannot be restored, or None when it can."""
    from accelerate.utils import load

    path = ckpt / f"random_states_{process_index}.pkl"
    try:
        states = load(path)
        missing = [k for k in ("random_state", "numpy_random_seed", "torch_manual_seed") if k not in states]
    except Exception as exc:  # missing, truncated, not a pickle, refused by weights_only
        reason = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
        return f"{path} is unreadable ({reason})"
    return f"{path} lacks {', '.join(missing)}" if missing else None


def _rmtree(path: Path) -> None:
    import shutil

    if path.exists():
        shutil.rmtree(path)


def peak_memory_mb() -> float:
    """CUDA max allocated when on a GPU, else the process's peak resident set size."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
