"""The contract between a group and the engine. It exists for readability, not for code reuse:
groups implement it with plain classes and inherit no behaviour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from torch.utils.data import Dataset


class Task(Protocol):
    """What a group provides; `dlkit.core.engine.fit` does the rest.

    Required:
      build_model()            the model, frozen/wrapped as the method needs (called after seeding)
      datasets()               (train, val or None); the engine owns batching, order and resume
      training_step(m, batch)  the loss, or (loss, logs); logs["tokens"] feeds tokens/s
      evaluate(m, loader, acc) metrics named "val_*" over this process's share of the val set;
                               combine across processes with `acc.reduce` / `gather_object`

    Optional (looked up with getattr, so a task only writes what it needs):
      collate(examples)                     DataLoader collate_fn (default: torch default_collate)
      batch_plan(dataset, batch_size, gen)  list of index lists for one epoch (default: shuffled chunks),
                                            e.g. length-grouped batches; must draw randomness from `gen` only
      on_eval(model, run, step)             samples, plots, heatmaps; main process only, RNG isolated
      save_model(model, path)               final weights (default: model.safetensors of the state dict)
      summary()                             extra keys for metrics.json (method, arch, ...)
      skipped_items                         count of corrupt inputs skipped while loading
    """

    def build_model(self) -> torch.nn.Module: ...

    def datasets(self) -> tuple[Dataset, Dataset | None]: ...

    def training_step(self, model: torch.nn.Module, batch: Any) -> torch.Tensor | tuple[torch.Tensor, dict]: ...

    def evaluate(self, model: torch.nn.Module, loader: Any, accel: Accelerator) -> dict[str, float]: ...
