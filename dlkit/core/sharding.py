"""`--sharding fsdp`: the model's parameters, gradients and optimizer state sharded over the processes with
torch's FSDP2 (`fully_shard`), so a model that does not fit one device with its optimizer trains on several.

The same code runs on a CPU mesh (gloo) and on GPUs (NCCL, plus gloo for what lives on the CPU). Accelerate's
FSDP plugin is not used: on a CPU it silently runs DDP (DESIGN.md section 7). Accelerate still owns the
processes, the device and the RNG states; this module owns the model:

- `shard`: `fully_shard` on each block the Task names (`Task.shard_blocks`: by default the transformer
  blocks a transformers model lists in `_no_split_modules`), then on the root; optional CPU offload and a
  mixed precision policy from `--precision`. Parameters are DTensor shards from then on; a step must call the
  root module (its forward gathers what each block needs), as under DDP.
- `Sharded.save` / `Sharded.load`: each process writes and reads its own shard of the trainable parameters and
  of the optimizer state with torch.distributed.checkpoint.
- `Sharded.gathered`: every process takes part in gathering the full parameters onto the main process's CPU,
  into a plain copy of the model (the same Parameter objects the Task built, so a Task that kept references
  to them sees the trained values); the final model and eval samples are written from it.

Gradient accumulation: each micro-batch's gradients are reduce-scattered at once (FSDP2 has no `no_sync`;
`set_requires_gradient_sync(False)` would keep a full-size gradient on every process until the last
micro-batch, which is the memory sharding is for). Like DDP's all-reduce, the reduce-scatter averages over
the processes, so the engine's loss scaling holds unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dlkit.core.config import ShardingConfig
from dlkit.core.errors import ConfigError, DataError
from dlkit.core.progress import info, warn

SHARDS_FOLDER = "shards"  # inside a checkpoint: torch.distributed.checkpoint's files, one per process + .metadata
ACCELERATE_FSDP = "ACCELERATE_USE_FSDP"  # set by `accelerate launch` with an FSDP config (--use_fsdp)


@dataclass(frozen=True)
class FsdpSettings:
    """How to shard: from --sharding/--cpu-offload, or mapped from an `accelerate launch` FSDP config."""

    cpu_offload: bool = False
    reshard_after_forward: bool = True  # False: gathered parameters stay until backward (ZeRO-2, SHARD_GRAD_OP)
    block_classes: tuple[str, ...] = ()  # class names to shard one at a time; () = Task.shard_blocks
    one_unit: bool = False  # NO_WRAP: the whole model is one unit


# -- settings ------------------------------------------------------------------------------------------


def from_launcher(cfg: Any, environ: Mapping[str, str] | None = None) -> tuple[Any, FsdpSettings | None]:
    """(the config to train with, how to shard or None). An `accelerate launch` FSDP config turns on
    --sharding fsdp (and --cpu-offload / --gradient-checkpointing when it asks for them), so the saved
    config.json records what ran; what dlkit's FSDP2 path cannot do is refused in one line."""
    env = os.environ if environ is None else environ
    launched = env.get(ACCELERATE_FSDP, "false").lower() == "true"
    if not launched:
        if isinstance(cfg, ShardingConfig) and cfg.sharding == "fsdp":
            return cfg, FsdpSettings(cpu_offload=cfg.cpu_offload)
        return cfg, None
    if not isinstance(cfg, ShardingConfig):
        raise ConfigError(
            "accelerate launch with an FSDP config: this command does not shard its model (its "
            "models fit one device); launch it with DDP (torchrun, or accelerate launch --multi_gpu)"
        )
    settings = _accelerate_settings(env)
    checkpointing = env.get("FSDP_ACTIVATION_CHECKPOINTING", "false").lower() == "true"
    cfg = replace(
        cfg,
        sharding="fsdp",
        cpu_offload=cfg.cpu_offload or settings.cpu_offload,
        gradient_checkpointing=cfg.gradient_checkpointing or checkpointing,
    )
    info(
        "accelerate launch with an FSDP config: dlkit shards the model itself with FSDP2 (--sharding fsdp"
        + (", --cpu-offload" if cfg.cpu_offload else "")
        + (", --gradient-checkpointing" if checkpointing else "")
        + "); the config's mixed precision is ignored: --precision decides"
    )
    return cfg, replace(settings, cpu_offload=cfg.cpu_offload)


def _accelerate_settings(env: Mapping[str, str]) -> FsdpSettings:
    """Accelerate's FSDP plugin variables (accelerate/utils/launch.py) as FsdpSettings."""
    strategy = env.get("FSDP_SHARDING_STRATEGY", "FULL_SHARD").upper()
    strategy = {"1": "FULL_SHARD", "2": "SHARD_GRAD_OP", "3": "NO_SHARD", "4": "HYBRID_SHARD"}.get(strategy, strategy)
    if strategy not in ("FULL_SHARD", "SHARD_GRAD_OP"):
        raise ConfigError(
            f"accelerate launch: fsdp_sharding_strategy {strategy} is not supported; dlkit's FSDP2 "
            "shards FULL_SHARD or SHARD_GRAD_OP (for NO_SHARD launch with DDP: --multi_gpu)"
        )
    reshard = strategy == "FULL_SHARD"
    if env.get("FSDP_VERSION", "1") == "2" and "FSDP_RESHARD_AFTER_FORWARD" in env:
        reshard = env["FSDP_RESHARD_AFTER_FORWARD"].lower() == "true"
    policy = env.get("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP").upper()
    if policy not in ("TRANSFORMER_BASED_WRAP", "NO_WRAP"):
        raise ConfigError(
            f"accelerate launch: fsdp_auto_wrap_policy {policy} is not supported; dlkit shards "
            "per transformer block (TRANSFORMER_BASED_WRAP) or the whole model at once (NO_WRAP)"
        )
    classes = tuple(c.strip() for c in env.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "").split(",") if c.strip())
    return FsdpSettings(
        cpu_offload=env.get("FSDP_OFFLOAD_PARAMS", "false").lower() == "true",
        reshard_after_forward=reshard,
        block_classes=classes,
        one_unit=policy == "NO_WRAP",
    )


@contextlib.contextmanager
def accelerate_unaware() -> Iterator[None]:
    """Build the Accelerator without Accelerate's FSDP mode: dlkit shards the model itself, and Accelerate in
    FSDP mode would take over clipping and checkpointing of models it never prepared."""
    saved = os.environ.pop(ACCELERATE_FSDP, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[ACCELERATE_FSDP] = saved


def check_precision(precision: str) -> None:
    if precision == "fp16":
        raise ConfigError(
            "--sharding fsdp trains in fp32 or bf16 (--precision bf16): fp16 needs a gradient scaler "
            "that dlkit does not run over sharded gradients"
        )


def init_process_group(cuda: bool) -> None:
    """The process group FSDP needs, before Accelerate looks for one: under a launcher from its environment,
    else a group of this one process (FSDP2 on a single device: CPU offload, or the same code path in
    tests). On GPUs, NCCL for the GPU tensors and gloo for the CPU ones (offloaded shards, gathered copies)."""
    if dist.is_initialized():
        return
    backend = "cuda:nccl,cpu:gloo" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)


# -- sharding ------------------------------------------------------------------------------------------


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The modules of `model` whose class a transformers model inside it names in `_no_split_modules`
    (decoder layers, encoder layers, embeddings): the units FSDP gathers one at a time."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def _blocks_named(model: nn.Module, classes: tuple[str, ...]) -> list[nn.Module]:
    blocks = [m for m in model.modules() if type(m).__name__ in classes]
    if not blocks:
        found = ", ".join(sorted({type(m).__name__ for m in transformer_blocks(model)})) or "none found"
        raise ConfigError(
            f"accelerate launch: fsdp_transformer_layer_cls_to_wrap {','.join(classes)} matches no "
            f"module of {type(model).__name__} (its transformer blocks: {found})"
        )
    return blocks


class Sharded:
    """A model sharded over the processes with FSDP2, and what the engine does with it."""

    def __init__(
        self,
        model: nn.Module,
        blocks: list[nn.Module],
        settings: FsdpSettings,
        precision: str,
        device: torch.device,
        main: bool,
    ):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

        originals = list({id(p): p for p in model.parameters()}.values())
        # the plain copy shares the Parameter objects (filled only while gathered) and copies the buffers
        self.plain = copy.deepcopy(model, {id(p): p for p in originals}) if main else None
        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        options: dict[str, Any] = {"mesh": mesh, "reshard_after_forward": settings.reshard_after_forward}
        if settings.cpu_offload:
            options["offload_policy"] = CPUOffloadPolicy(pin_memory=device.type == "cuda")
        if precision == "bf16":  # computes in bf16, keeps fp32 shards and reduces gradients in fp32
            options["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        units = [] if settings.one_unit else blocks
        for block in reversed(units):  # innermost first: a unit owns the parameters no inner unit took
            fully_shard(block, **options)
        fully_shard(model, **options)
        # FSDP copied each process's shard; the whole tensors live on only while something references them (a
        # Task's snapshot, the plain copy), so let go of their memory: every process keeps its shard alone
        _release(originals)
        self.originals = originals
        self.model = model

    @contextlib.contextmanager
    def gathered(self) -> Iterator[nn.Module | None]:
        """The full model on the main process's CPU (None on the others), for as long as the block runs.
        Every process must enter it: gathering the shards is a collective."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.plain is None:
            yield None
            return
        for name, param in self.plain.named_parameters(remove_duplicate=False):
            param.data = full[name]
        buffers = dict(self.model.named_buffers())
        for name, buffer in self.plain.named_buffers():
            buffer.copy_(buffers[name])
        del full
        self.plain.train(self.model.training)  # samples in eval mode, as the sharded model is
        try:
            yield self.plain
        finally:
            _release(self.originals)

    def save(self, optimizer: torch.optim.Optimizer, folder: Path) -> None:
        """This process's shard of the trainable parameters, buffers and optimizer state into folder/shards
        (frozen parameters are left out: the base they come from is loaded again on resume)."""
        import torch.distributed.checkpoint as dcp

        dcp.save(self._state(optimizer), checkpoint_id=str(folder / SHARDS_FOLDER))

    def load(self, optimizer: torch.optim.Optimizer, folder: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        if not (folder / SHARDS_FOLDER / ".metadata").is_file():
            raise FileNotFoundError(f"{folder / SHARDS_FOLDER} holds no sharded checkpoint")
        state = self._state(optimizer)
        dcp.load(state, checkpoint_id=str(folder / SHARDS_FOLDER))
        # not strict: the frozen parameters are not in the checkpoint (they stay as the base loaded them)
        result = set_state_dict(
            self.model,
            optimizer,
            model_state_dict=state["model"],
            optim_state_dict=state["optimizer"],
            options=StateDictOptions(strict=False),
        )
        missing = [k for k in result.missing_keys if k not in self._frozen()]
        if missing or result.unexpected_keys:
            raise RuntimeError(
                f"the checkpoint does not match the model (missing {missing[:3]}, unexpected "
                f"{result.unexpected_keys[:3]})"
            )

    def _state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        model_state, optim_state = get_state_dict(
            self.model, optimizer, options=StateDictOptions(ignore_frozen_params=True)
        )
        # a frozen parameter tied to another name (a frozen embedding reused as the LM head) escapes the option
        frozen = self._frozen()
        return {"model": {k: v for k, v in model_state.items() if k not in frozen}, "optimizer": optim_state}

    def _frozen(self) -> set[str]:
        return {name for name, p in self.model.named_parameters(remove_duplicate=False) if not p.requires_grad}


def _release(params: list[nn.Parameter]) -> None:
    """Drop the parameters' data (the objects stay, empty, for whoever holds them) to free its memory."""
    for param in params:
        param.data = torch.empty(0, dtype=param.dtype)


def shard(
    task: Any, model: nn.Module, settings: FsdpSettings, precision: str, device: torch.device, main: bool
) -> Sharded:
    """Shard `model` in place (before its optimizer is built: the parameters become DTensor shards)."""
    blocks = _blocks_named(model, settings.block_classes) if settings.block_classes else task.shard_blocks(model)
    if not blocks and not settings.one_unit:
        warn(
            f"--sharding fsdp: {type(model).__name__} names no blocks to shard one at a time; the whole model is "
            "one unit, gathered at once in every forward"
        )
    return Sharded(model, blocks, settings, precision, device, main)


def parameter_bytes(model: nn.Module) -> int:
    """Bytes of parameter storage this process holds for `model` (its shards under FSDP, padding included)."""
    from torch.distributed.tensor import DTensor

    storages: dict[int, int] = {}
    for param in model.parameters():
        local = param.to_local() if isinstance(param, DTensor) else param
        storage = local.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def eval_batches(size: int, world: int, rank: int, batch_size: int) -> list[list[int]]:
    """This process's validation batches when every forward is a collective (FSDP gathers each unit's
    parameters from all processes): the same number of batches on every process, every example scored once,
    each batch of at most `batch_size` examples (with batch_size 1 and a set that does not divide evenly over
    the processes, some batches hold 2)."""
    if size < world:
        raise DataError(
            f"the validation set ({size} examples) is smaller than the {world} processes; "
            "under --sharding fsdp every process scores a share"
        )
    batches = max(1, min(math.ceil(size / (world * batch_size)), size // world))
    parts = np.array_split(np.arange(size), world * batches)
    return [parts[i * world + rank].tolist() for i in range(batches)]


def calls_the_root(model: nn.Module) -> bool:
    """Whether a step must call `model(...)` itself, never a submodule or another method: DDP syncs the
    gradients and FSDP gathers the parameters in the root module's forward."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, nn.parallel.DistributedDataParallel | FSDPModule)
