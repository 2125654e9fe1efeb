"""The contract between a group and the engine: a group subclasses `Task`, writes the four required
methods and overrides the optional hooks it needs. Every hook is declared here with its default, so
the engine calls them directly (no `getattr` probing), mypy checks an override's signature, and
`check_task` refuses a method whose name is a near miss of a hook (`on_evl`), which would otherwise
never be called.
"""

from __future__ import annotations

import abc
import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dlkit.core.modelcard import CardInfo

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

    from dlkit.core.run import Run


class SizedDataset(Protocol):
    """What the engine asks of a dataset: its length (batch plans, exact resume, the empty-data checks) and its
    items by index. A torch map-style Dataset with a `__len__` is one."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


class Task(abc.ABC):
    """What a group provides; `dlkit.core.engine.fit` does the rest.

    Required:
      build_model()            the model, frozen/wrapped as the method needs (called after seeding)
      datasets()               (train, val or None); the engine owns batching, order and resume
      training_step(m, batch)  the MEAN loss over the batch's items, or (loss, logs); logs["tokens"]
                               feeds tokens/s; other logs are averaged per logged step. Log values
                               may be tensors: the engine syncs them once per logged step
      evaluate(m, loader, acc) metrics named "val_*" over this process's share of the val set;
                               combine across processes with `acc.reduce` / `gather_object`

    Optional (override what you need; the defaults are below):
      collate(examples)                     DataLoader collate_fn (default: torch default_collate)
      batch_plan(dataset, batch_size, gen)  index lists for one epoch (default: shuffled chunks), e.g.
                                            length-grouped batches; must draw randomness from `gen` only.
                                            The engine asks for batches of one optimizer step
                                            (batch x accum x processes) and splits them into micro-batches
      num_items(batch)                      how many items the loss of a collated batch averages over
                                            (labelled tokens, examples; default: examples). Gradient
                                            accumulation weights each micro-batch by it, so accumulated
                                            and multi-process steps equal one big batch
      on_eval(model, run, step)             samples, plots, heatmaps; main process only, RNG isolated
      trained_names(model)                  the tensors a checkpoint stores, by name (default: the trainable
                                            parameters and the persistent buffers; the frozen rest is rebuilt
                                            from the base and checked against a fingerprint on resume)
      save_model(model, path)               final weights (default: model.safetensors of the state dict)
      test(model, run)                      metrics of the final model on the held-out test split (test_*),
                                            scored once after training (main process, eval mode, RNG
                                            isolated); they join metrics.json and the model card
                                            (under --sharding fsdp on_eval, save_model and test get a plain
                                            copy of the model on the main process's CPU, holding the
                                            gathered parameters)
      card_info()                           what the final folder's model card says that the run folder
                                            does not: Hub task, the library that loads it, how (CardInfo)
      summary()                             extra keys for metrics.json (method, arch, ...)
      shard_blocks(model)                   under --sharding fsdp, the modules sharded one at a time (each
                                            gathered only while it runs); default: the transformer blocks
                                            a transformers model names in `_no_split_modules`
      skipped_items                         count of corrupt inputs skipped while loading
    """

    skipped_items: int = 0

    @abc.abstractmethod
    def build_model(self) -> torch.nn.Module: ...

    @abc.abstractmethod
    def datasets(self) -> tuple[SizedDataset, SizedDataset | None]: ...

    @abc.abstractmethod
    def training_step(self, model: torch.nn.Module, batch: Any) -> torch.Tensor | tuple[torch.Tensor, dict]: ...

    @abc.abstractmethod
    def evaluate(self, model: torch.nn.Module, loader: Any, accel: Accelerator) -> dict[str, float]: ...

    # -- optional hooks ------------------------------------------------------------------------------

    def collate(self, examples: list[Any]) -> Any:
        from torch.utils.data import default_collate

        return default_collate(examples)

    def batch_plan(self, dataset: SizedDataset, batch_size: int, gen: torch.Generator) -> list[list[int]]:
        import torch

        order = torch.randperm(len(dataset), generator=gen).tolist()
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def num_items(self, batch: Any) -> int:
        return batch_size(batch)

    def on_eval(self, model: torch.nn.Module, run: Run, step: int) -> None:
        return None

    def trained_names(self, model: torch.nn.Module) -> list[str]:
        trainable = [name for name, p in model.named_parameters() if p.requires_grad]
        persistent = model.state_dict().keys()  # not the buffers a model recomputes (rotary frequencies)
        return trainable + [name for name, _ in model.named_buffers() if name in persistent]

    def save_model(self, model: torch.nn.Module, path: Path) -> None:
        from safetensors.torch import save_model as save_safetensors

        path.mkdir(parents=True, exist_ok=True)
        save_safetensors(model, str(path / "model.safetensors"))

    def test(self, model: torch.nn.Module, run: Run) -> dict[str, Any]:
        return {}

    def card_info(self) -> CardInfo:
        return CardInfo(
            usage="from safetensors.torch import load_file\n"
            'state_dict = load_file("model.safetensors")  # the weights of the trained model'
        )

    def summary(self) -> dict[str, Any]:
        return {}

    def shard_blocks(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        from dlkit.core.sharding import transformer_blocks

        return transformer_blocks(model)


HOOKS = frozenset(name for name in vars(Task) if not name.startswith("_"))


def check_task(task: object) -> None:
    """Refuse what `fit` cannot train: not a Task, or a method named like a hook but not one."""
    if not isinstance(task, Task):
        raise TypeError(f"fit() needs a dlkit.core.task.Task; {type(task).__name__} does not subclass it")
    for cls in type(task).__mro__:
        if cls in (Task, abc.ABC, object):
            continue
        for name in vars(cls):
            if name.startswith("_") or name in HOOKS:
                continue
            close = difflib.get_close_matches(name, HOOKS, n=1, cutoff=0.85)
            if close:
                raise TypeError(
                    f"{type(task).__name__}.{name} is not a Task hook and would never be called; "
                    f"did you mean {close[0]}?"
                )


def batch_size(batch: Any) -> int:
    """Examples in a collated batch: the first dimension of its first tensor."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        return batch_size(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)):
        return batch_size(batch[0])
    raise TypeError(f"cannot tell the batch size of {type(batch).__name__}; override Task.num_items")
