"""Frozen parts run once. When the first part of a model is frozen and its inputs are deterministic (no
random augmentation), its outputs are a pure function of the data and the frozen weights: they are computed
once per run, and training and validation read them instead of running that part again every epoch.

A group describes its model's frozen front with `FrozenFront`:
  modules   what the front is made of; `hold_eval` keeps them in eval mode on both paths (dropout,
            BatchNorm statistics and stochastic depth off, as for any frozen feature extractor), so the
            cached and the uncached path compute the same thing
  boundary  the module whose output (or input, `read="input"`) is the features
  rest      (model, features) -> what the model's forward returns from there (logits)

`precompute` runs the front over a dataset (eval mode, no gradients, the training RNG untouched) into a
`FeatureStore`: one (N, ...) float32 tensor, in memory when it fits in half the memory available, else in a
file mapped from disk (removed from the directory at once: nothing is left behind, and a checkpoint never
holds it). `route_features` makes `model(features=...)` run `rest`, so the cached path goes through the
model's forward as DistributedDataParallel needs. Under several processes each process computes the
features of the whole set (every process holds every example, as the engine's datasets do).

`--no-cache-features` (the same flag in every group that has a frozen front) trains on the raw inputs.
"""

from __future__ import annotations

import os
import tempfile
import time
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from dlkit.core.engine import isolated_rng
from dlkit.core.errors import DataError
from dlkit.core.progress import info, track, warn
from dlkit.core.sources import cache_dir
from dlkit.core.task import SizedDataset

FEATURES = "features"  # the batch key of cached features
MEMORY_SHARE = 0.5  # features live in memory when they take at most this share of the available memory


@dataclass
class FrozenFront:
    modules: list[nn.Module]
    boundary: nn.Module
    rest: Callable[[nn.Module, Tensor], Tensor]
    read: Literal["input", "output"] = "output"
    pick: Callable[[Tensor], Tensor] = field(default=lambda x: x)  # the part of the boundary tensor `rest` reads
    name: str = "frozen front"


# -- eval mode for frozen modules ------------------------------------------------------------------


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def hold_eval(modules: Iterable[nn.Module]) -> None:
    """Keep `modules` in eval mode whatever `.train()` the model gets (the engine puts the whole model in train
    mode before the first step and after every evaluation)."""
    for module in modules:
        module.train = types.MethodType(_stay_in_eval, module)
        module.eval()


# -- running the front -----------------------------------------------------------------------------


class _Reached(Exception):
    """Raised by the boundary's hook: the front has run, the rest of the forward is not needed."""


def run_front(front: FrozenFront, forward: Callable[[], Any]) -> Tensor:
    """The boundary's output (or input) when `forward()` runs the whole model; the forward stops there."""
    captured: list[Tensor] = []

    def keep(value: Any) -> None:
        captured.append(value[0] if isinstance(value, tuple | list) else value)
        raise _Reached

    if front.read == "input":
        handle = front.boundary.register_forward_pre_hook(lambda module, args: keep(args))
    else:
        handle = front.boundary.register_forward_hook(lambda module, args, out: keep(out))
    try:
        forward()
    except _Reached:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"{front.name}: the forward pass never reached {type(front.boundary).__name__}")
    return front.pick(captured[0])


def _rest_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    features = kwargs.pop(FEATURES, None)
    if features is None:
        return type(self).forward(self, *args, **kwargs)
    return self._dlkit_rest(self, features)


def route_features(model: nn.Module, rest: Callable[[nn.Module, Tensor], Tensor]) -> None:
    """`model(features=F)` returns `rest(model, F)`; any other call is the model's own forward. Going through
    `forward` keeps DistributedDataParallel's gradient sync (a method called on the unwrapped model skips it)."""
    model._dlkit_rest = rest
    model.forward = types.MethodType(_rest_forward, model)


# -- the store -------------------------------------------------------------------------------------


def available_memory() -> int:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), or 4 GiB when it cannot tell."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def memory_budget() -> int:
    """Bytes of features kept in memory; more go to a file on disk (DLKIT_FEATURE_MEMORY_MB overrides)."""
    override = os.environ.get("DLKIT_FEATURE_MEMORY_MB")
    return int(float(override) * 2**20) if override else int(available_memory() * MEMORY_SHARE)


class FeatureStore:
    """N examples' features, (N, ...) float32, in memory or mapped from an unlinked file on disk."""

    def __init__(self, count: int, shape: Sequence[int], budget: int | None = None):
        self.shape = (count, *shape)
        self.nbytes = int(np.prod(self.shape)) * 4
        self.in_memory = self.nbytes <= (memory_budget() if budget is None else budget)
        if self.in_memory:
            self.tensor = torch.empty(self.shape, dtype=torch.float32)
        else:
            self.tensor = torch.from_numpy(_mapped_array(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.tensor[index]

    def where(self) -> str:
        size = f"{self.nbytes / 2**20:,.1f} MB"
        return f"{size} in memory" if self.in_memory else f"{size} mapped from a file in {feature_dir()}"


def feature_dir() -> Path:
    return cache_dir() / "features"


def _mapped_array(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array backed by a file whose name is removed at once: the mapping keeps the data until the
    process ends, so nothing is left on disk, whatever way the run ends."""
    folder = feature_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix="features-", suffix=".f32") as handle:
        array: np.ndarray = np.memmap(handle.name, dtype=np.float32, mode="w+", shape=shape)
    return array  # the file is unlinked; the mapping stays valid


# -- precomputing ----------------------------------------------------------------------------------


class _Indexed(Dataset):
    def __init__(self, dataset: SizedDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


@dataclass
class Precomputed:
    store: FeatureStore
    kept: list[int]  # the dataset indices the rows of `store` belong to (undecodable examples are left out)
    fields: dict[str, Tensor]  # per-example values taken from the collated batches (labels, tokens, ...)


def precompute(
    dataset: SizedDataset,
    collate: Callable[[list[Any]], Any],
    encode: Callable[[Any], Tensor],
    batch_size: int,
    fields: Callable[[Any], dict[str, Tensor]] | None = None,
    num_workers: int = 0,
    budget: int | None = None,
    what: str = "examples",
) -> Precomputed:
    """`encode(batch)` over the whole dataset in order, without gradients and with the training RNG untouched.
    Items that are None (an undecodable image) are left out and their indices are not in `kept`."""

    def collate_kept(items: list[tuple[int, Any]]) -> tuple[list[int], Any]:
        kept = [(i, x) for i, x in items if x is not None]
        return [i for i, _ in kept], collate([x for _, x in kept]) if kept else None

    loader = DataLoader(_Indexed(dataset), batch_size=batch_size, collate_fn=collate_kept, num_workers=num_workers)
    store: FeatureStore | None = None
    kept: list[int] = []
    columns: dict[str, list[Tensor]] = {}
    with isolated_rng(), torch.no_grad():
        for indices, batch in track(loader, f"encoding {what}", total=len(loader)):
            if not indices:
                continue
            out = encode(batch).detach().float().cpu()
            if store is None:
                store = FeatureStore(len(dataset), out.shape[1:], budget)
            store.tensor[len(kept) : len(kept) + len(indices)] = out
            kept.extend(indices)
            for key, value in (fields(batch) if fields else {}).items():
                columns.setdefault(key, []).append(torch.as_tensor(value).cpu())
    if store is None:
        raise DataError(f"none of the {len(dataset)} {what} could be read")
    if len(kept) < len(store):
        store.tensor, store.shape = store.tensor[: len(kept)], (len(kept), *store.shape[1:])
    return Precomputed(store, kept, {k: torch.cat(v) for k, v in columns.items()})


class CachedSet(Dataset):
    """Examples as {"features": (...), field: value}: what a collated batch of them gives `rest`."""

    def __init__(self, computed: Precomputed):
        self.store, self.fields = computed.store, computed.fields

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {FEATURES: self.store[index], **{k: v[index] for k, v in self.fields.items()}}


def is_cached(examples: Sequence[Any]) -> bool:
    """Whether a list of examples (before collation) comes from a CachedSet."""
    return bool(examples) and isinstance(examples[0], dict) and FEATURES in examples[0]


def collate(examples: Sequence[dict[str, Tensor] | None]) -> dict[str, Tensor]:
    """Cached examples stacked per key (a CachedSet holds only what was read: none is None)."""
    kept = [e for e in examples if e is not None]
    return {key: torch.stack([e[key] for e in kept]) for key in kept[0]}


def worth_caching(examples: int, batch_size: int, max_steps: int | None) -> bool:
    """Whether a run sees its training examples at least once: a run stopped by --max-steps before that would
    compute more features than it reads."""
    return not max_steps or max_steps * batch_size >= examples


# -- a classifier's front, end to end --------------------------------------------------------------


def agrees(
    front: FrozenFront, model: nn.Module, batch: Any, full: Callable[[Any], Tensor], encode: Callable[[Any], Tensor]
) -> bool:
    """Whether `rest` on the front's features gives the whole model's output on one batch (eval mode, no
    gradients): a model laid out otherwise than `rest` assumes trains on its raw inputs instead."""
    was_training = model.training
    model.eval()
    try:
        with isolated_rng(), torch.no_grad():
            expected = full(batch)
            got = front.rest(model, encode(batch))
    finally:
        model.train(was_training)
    return got.shape == expected.shape and torch.allclose(got, expected, rtol=1e-4, atol=1e-5)


def cached_or_raw(
    cfg: Any,
    model: nn.Module,
    front: FrozenFront | None,
    train: SizedDataset,
    val: SizedDataset,
    collate_raw: Callable[[list[Any]], Any],
    forward: Callable[[Any], Tensor],
    fields: Callable[[Any], dict[str, Tensor]],
    deterministic: bool = True,
) -> tuple[Any, Any, bool]:
    """(train, val, cached): the two sets as the front's features when caching applies (`cfg.cache_features`, a
    frozen front, deterministic inputs, a run that sees its examples at least once, a model laid out as `rest`
    expects), else as given. `forward(batch)` is the whole model's output on a raw batch."""
    if not (
        cfg.cache_features
        and front is not None
        and deterministic
        and worth_caching(len(train), cfg.batch_size * cfg.grad_accum, cfg.max_steps)
    ):
        return train, val, False
    cached = cache_datasets(
        front,
        model,
        [train, val],
        collate_raw,
        encode=lambda batch: run_front(front, lambda: forward(batch)),
        full=forward,
        fields=fields,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
    )
    if cached is None:
        return train, val, False
    return cached[0], cached[1], True


def cache_datasets(
    front: FrozenFront,
    model: nn.Module,
    datasets: Sequence[SizedDataset | None],
    collate_raw: Callable[[list[Any]], Any],
    encode: Callable[[Any], Tensor],
    full: Callable[[Any], Tensor],
    fields: Callable[[Any], dict[str, Tensor]],
    batch_size: int,
    num_workers: int = 0,
) -> list[CachedSet | None] | None:
    """Each dataset as a CachedSet of the front's features, and `model(features=...)` routed to `rest`; None
    (with one line saying why) when `rest` does not reproduce the model, which then trains on its raw inputs."""
    first = next(d for d in datasets if d is not None)
    sample = [x for x in (first[i] for i in range(min(len(first), 2))) if x is not None]
    if sample and not agrees(front, model, collate_raw(sample), full, encode):
        warn(
            f"{front.name}: {type(model).__name__} is laid out otherwise than expected, so its features are not "
            "cached and it runs on every batch"
        )
        return None
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        cached = [
            CachedSet(precompute(d, collate_raw, encode, batch_size, fields, num_workers)) if d is not None else None
            for d in datasets
        ]
    finally:
        model.train(was_training)
    route_features(model, front.rest)
    sizes = " + ".join(f"{len(c)}" for c in cached if c is not None)
    stores = [c.store for c in cached if c is not None]
    where = "; ".join(s.where() for s in stores)
    info(
        f"{front.name} runs once: features of {sizes} examples computed in {time.perf_counter() - start:.1f}s "
        f"({where}); --no-cache-features runs it on every batch"
    )
    return cached
