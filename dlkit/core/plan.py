"""Peak memory of a training run per process, predicted from the model's structure alone: built on the meta device
(shapes and dtypes, no weights, nothing downloaded but config.json), with the method applied as training applies
it, and one forward pass on meta tensors whose saved-for-backward tensors are counted.

The peak is the sum of
  weights      frozen parameters and buffers, in the dtype training holds them (quantized layers in their bytes)
  trainable    the parameters that train, in fp32 (dlkit.core.engine keeps them so)
  gradients    one fp32 gradient per trainable parameter (twice under DDP: its buckets hold a copy)
  optimizer    AdamW's two moments (SGD's momentum) per trainable parameter, fp32
  activations  what autograd saves in the forward pass for the backward one (grows with batch and length)
  logits       the loss head's share: the scored rows and their gradient (chunked), or the full logits
and `benchmarks/plan_vs_measured.py` checks it against measured peaks. A group builds the model and says how
to run its forward pass; the counting and the report are here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

GIB = 2**30
PARTS = ("weights", "trainable", "gradients", "optimizer", "activations", "logits")


@dataclass
class MemoryPlan:
    """Bytes per part at `batch_size`; `per_example` of them grow with each example of the batch."""

    batch_size: int
    parts: dict[str, int]
    per_example: int
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def max_batch(self, budget: int) -> int:
        """The largest batch whose peak fits in `budget` bytes (0 when not even one example fits)."""
        fixed = self.total - self.per_example * self.batch_size
        return max(0, (budget - fixed) // self.per_example) if self.per_example else 0

    def report(self, budget: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {f"{name}_gib": round(value / GIB, 3) for name, value in self.parts.items()}
        out["total_gib"] = round(self.total / GIB, 3)
        out["bytes"] = {**self.parts, "total": self.total}
        out["batch_size"] = self.batch_size
        if budget is not None:
            out["budget_gib"] = round(budget / GIB, 3)
            out["fits"] = self.total <= budget
            out["max_batch_size"] = self.max_batch(budget)
        out["notes"] = self.notes
        return out


def detected_gpu_memory() -> int | None:
    """Total memory of this process's GPU in bytes, or None without one."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory


def budget_bytes(gpu_memory_gib: float | None) -> tuple[int | None, str]:
    """--gpu-memory in bytes (or the detected GPU's memory), and where it came from."""
    if gpu_memory_gib is not None:
        return int(gpu_memory_gib * GIB), f"--gpu-memory {gpu_memory_gib:g}"
    detected = detected_gpu_memory()
    if detected is not None:
        return detected, torch.cuda.get_device_name(torch.cuda.current_device())
    return None, "no GPU detected and no --gpu-memory"


DTYPE_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2, torch.float64: 8}
COMPUTE_DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # by --precision


def stored_dtype(config: Any) -> torch.dtype:
    """The dtype a checkpoint's config.json says its weights are stored in (float32 when it says nothing)."""
    value = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(value, torch.dtype):
        return value
    return getattr(torch, str(value), torch.float32) if value else torch.float32


def parameter_bytes(
    model: nn.Module,
    stored: torch.dtype,
    precision: str,
    quantize: str = "none",
    quantizable: dict[int, nn.Linear] | None = None,
) -> tuple[int, int]:
    """(bytes of the frozen parameters and buffers as training holds them, count of trainable parameters).
    Frozen weights stay in the checkpoint's dtype under --precision bf16/fp16 and become fp32 with --precision
    no (dlkit.core.engine.train_in_fp32); with a quantized base, the layers in `quantizable` take bitsandbytes'
    bytes and k-bit preparation makes every other weight fp32."""
    quantizable = quantizable or {}
    weights = trainable = 0
    for param in dict((id(p), p) for p in model.parameters()).values():
        if param.requires_grad:
            trainable += param.numel()
        elif id(param) in quantizable:
            weights += quantized_bytes(quantizable[id(param)], quantize)
        else:
            keeps_dtype = precision != "no" and quantize == "none"
            weights += param.numel() * (DTYPE_BYTES.get(stored, 4) if keeps_dtype else 4)
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    return weights, trainable


def state_bytes(trainable: int, optimizer: str, processes: int) -> dict[str, int]:
    """trainable / gradients / optimizer bytes for `trainable` fp32 parameters."""
    return {
        "trainable": 4 * trainable,
        "gradients": 4 * trainable * (2 if processes > 1 else 1),
        "optimizer": (8 if optimizer == "adamw" else 4) * trainable,
    }


class _FusedAttentionSaves(torch.autograd.Function):
    """What a fused attention kernel (torch's CPU flash attention, FlashAttention and memory-efficient attention
    on a GPU, dlkit.nn.blockwise) keeps for its backward pass: q, k, v, the output and each row's log-sum-exp;
    never the (T x T) scores."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = q.new_empty(*q.shape[:3], v.shape[-1])  # (B, heads, T, D)
        ctx.save_for_backward(q, k, v, out, q.new_empty(q.shape[:3], dtype=torch.float32))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        raise RuntimeError("a memory plan's forward pass is never differentiated")


PLAN_ATTENTION = "dlkit_plan"  # the name `fused_attention` is registered under for a plan's forward pass


def fused_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: the saves of a fused kernel, laid out as sdpa returns its output."""
    return _FusedAttentionSaves.apply(query, key, value).transpose(1, 2).contiguous(), None


def register_attention(name: str, forward: Callable[..., Any]) -> bool:
    """Make an attention function known to transformers by `name`, with sdpa's masks; False where this
    transformers has no attention interface (its models keep their own)."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        return False
    AttentionInterface.register(name, forward)
    AttentionMaskInterface.register(name, sdpa_mask)
    return True


@dataclass
class SavedTensors:
    """Bytes autograd saved in one forward pass, in total and per block (a decoder layer, an encoder block)."""

    total: int
    per_block: list[int]
    block_inputs: list[int]


def saved_tensors(model: nn.Module, forward: Callable[[], Any], blocks: nn.ModuleList | None) -> SavedTensors:
    """Run `forward` (on meta tensors) and count, once per storage, every tensor autograd saves that is not a
    parameter or buffer; attributed to the block running when it was saved. Block inputs are recorded for
    gradient checkpointing, which keeps only those."""
    own = {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers()]}
    seen: set[int] = set()
    per_block = [0] * (len(blocks) if blocks is not None else 0)
    block_inputs = [0] * len(per_block)
    current = [-1]
    total = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key not in own and key not in seen:
            seen.add(key)
            total[0] += storage.nbytes()
            if current[0] >= 0:
                per_block[current[0]] += storage.nbytes()
        return tensor

    handles = []
    for index, block in enumerate(blocks or []):

        def enter(module: nn.Module, args: tuple, kwargs: dict, index: int = index) -> None:
            current[0] = index
            hidden = args[0] if args else next(iter(kwargs.values()))
            block_inputs[index] = hidden.numel() * hidden.element_size()

        def leave(module: nn.Module, args: tuple, output: Any) -> None:
            current[0] = -1

        handles.append(block.register_forward_pre_hook(enter, with_kwargs=True))
        handles.append(block.register_forward_hook(leave))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            forward()
    finally:
        for handle in handles:
            handle.remove()
    return SavedTensors(total[0], per_block, block_inputs)


def activation_bytes(saved: SavedTensors, gradient_checkpointing: bool) -> int:
    """Saved tensors alive at the end of the forward pass, plus the backward pass's working set: while a block
    runs backward, the gradients of its intermediate tensors are about as large as what it saved (taken as the
    largest block's saves). With gradient checkpointing a block keeps only its input, and its saves come back
    one block at a time in the backward pass."""
    working = max(saved.per_block, default=0)
    if not gradient_checkpointing or not saved.per_block:
        return saved.total + working
    outside = saved.total - sum(saved.per_block)
    return outside + sum(saved.block_inputs) + max(saved.per_block) + working


def linear_weight_ids(model: nn.Module, skip: set[int]) -> dict[int, nn.Linear]:
    """The Linear layers a bitsandbytes load would quantize (all but the modules in `skip`), by weight id."""
    return {id(m.weight): m for m in model.modules() if isinstance(m, nn.Linear) and id(m) not in skip}


def quantized_bytes(linear: nn.Linear, quantize: str) -> int:
    """Bytes bitsandbytes holds for a Linear's weight: NF4 with double quantisation packs two values per byte
    plus one 8-bit absmax per block of 64, one fp32 per 256 blocks and its two code books (16 and 256 fp32);
    int8 one byte plus an fp32 scale per row."""
    numel = linear.weight.numel()
    if quantize == "4bit":
        return math.ceil(numel / 2) + math.ceil(numel / 64) + 4 * math.ceil(numel / (64 * 256)) + 4 * (16 + 256)
    return numel + 4 * linear.weight.shape[0]


def plan_result(settings: dict[str, Any], plan: MemoryPlan, gpu_memory_gib: float | None) -> dict[str, Any]:
    """What a `plan` command prints: its settings, the parts and, against --gpu-memory or the detected GPU,
    whether it fits and the largest batch that does."""
    budget, source = budget_bytes(gpu_memory_gib)
    return {**settings, "budget_source": source, **plan.report(budget)}
