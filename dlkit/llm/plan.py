"""`dlkit llm plan`: the peak memory per process of `dlkit llm train` with the same settings, predicted from the
model's config.json (dlkit.core.plan): the method applied to a meta-device model, one meta forward pass of the
decoder at the batch and length given, and the loss head as dlkit.llm.task computes it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from dlkit.core import plan as core
from dlkit.core.config import checked
from dlkit.llm import methods
from dlkit.llm.config import PlanConfig
from dlkit.llm.models import (
    decoder_layers,
    needs_eager_attention,
    resolve_model,
)
from dlkit.nn.losses import CHUNK_ELEMENTS


def plan(cfg: PlanConfig) -> dict[str, Any]:
    """The plan as a dict (GiB per part, total, whether it fits and the largest batch that does)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    checked(cfg)
    base = resolve_model(cfg.model)
    config = AutoConfig.from_pretrained(base.path)
    eager = needs_eager_attention(config)
    if not eager:
        core.register_attention(core.PLAN_ATTENTION, core.fused_attention)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager" if eager else core.PLAN_ATTENTION)
    stored = core.stored_dtype(config)
    head = model.get_output_embeddings()
    quantizable = core.linear_weight_ids(model, skip={id(head)}) if cfg.quantize != "none" else {}
    base_params = list(model.named_parameters())
    method = methods.METHODS[cfg.method]
    model = methods.build(model, SimpleNamespace(**vars(cfg), init_text=None), base.path)

    weights, trainable = core.parameter_bytes(model, stored, cfg.precision, cfg.quantize, quantizable)
    parts = {"weights": weights, **core.state_bytes(trainable, cfg.optimizer, cfg.processes)}

    compute = core.COMPUTE_DTYPES[cfg.precision]
    model.to(compute)
    length = cfg.max_length + (cfg.num_virtual_tokens if method.family == "soft-prompt" else 0)
    # soft prompts, and PEFT's k-bit preparation, hand the decoder embeddings that need a gradient
    grad_inputs = method.family == "soft-prompt" or cfg.quantize != "none"
    at = {
        batch: activations(model, batch, length, cfg.gradient_checkpointing, compute, grad_inputs) for batch in (1, 2)
    }
    per_example = at[2] - at[1]
    head_path = (
        "chunked"
        if (cfg.processes == 1 and method.family != "soft-prompt" and type(model.get_output_embeddings()) is nn.Linear)
        else "full"
    )
    logits_per_example, logits_fixed = logits_bytes(model, config, length, compute, head_path)
    dequantized = max((m.weight.numel() for m in quantizable.values()), default=0) * compute.itemsize
    parts["activations"] = at[1] + per_example * (cfg.batch_size - 1) + dequantized
    parts["logits"] = logits_fixed + logits_per_example * cfg.batch_size

    notes = [
        f"{config.model_type}: {sum(p.numel() for _, p in base_params):,} parameters stored in "
        f"{str(stored).removeprefix('torch.')}; {trainable:,} train ({cfg.method})",
        "attention: eager, the (batch, heads, T, T) scores are saved"
        if eager
        else "attention: a fused kernel (q, k, v, output and log-sum-exp saved)",
        f"loss: {'the scored rows in chunks of the vocabulary' if head_path == 'chunked' else 'full logits'}",
    ]
    if cfg.quantize != "none":
        notes.append(f"{len(quantizable)} linear layers in {cfg.quantize}; their backward dequantizes one at a time")
    result = core.MemoryPlan(
        cfg.batch_size, {name: parts[name] for name in core.PARTS}, per_example + logits_per_example, notes
    )
    quantized = f" · {cfg.quantize}" if cfg.quantize != "none" else ""
    settings = {
        "what": f"{cfg.model} · {cfg.method}{quantized} · batch {cfg.batch_size} x {cfg.max_length} tokens",
        "model": cfg.model,
        "method": cfg.method,
        "quantize": cfg.quantize,
        "precision": cfg.precision,
        "max_length": cfg.max_length,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "processes": cfg.processes,
    }
    return core.plan_result(settings, result, cfg.gpu_memory)


def activations(
    model: nn.Module, batch: int, length: int, gradient_checkpointing: bool, dtype: torch.dtype, grad_inputs: bool
) -> int:
    """Bytes the decoder saves for backward at (batch, length), on meta tensors; `grad_inputs`: its input
    embeddings need a gradient (otherwise nothing before the first trainable layer saves anything)."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = lm.get_decoder()
    if grad_inputs:
        embeds = torch.empty(batch, length, lm.config.hidden_size, device="meta", dtype=dtype, requires_grad=True)
        inputs: dict[str, Any] = {"inputs_embeds": embeds}
    else:
        inputs = {"input_ids": torch.zeros(batch, length, dtype=torch.long, device="meta")}
    saved = core.saved_tensors(model, lambda: decoder(**inputs), decoder_layers(model))
    return core.activation_bytes(saved, gradient_checkpointing)


def logits_bytes(model: nn.Module, config: Any, length: int, dtype: torch.dtype, path: str) -> tuple[int, int]:
    """(bytes per example, fixed bytes) of the loss head with every position scored. Chunked (dlkit.nn.losses):
    the scored rows and their gradient, chunks of logits in fp32, the head's weight gradient when it trains.
    Full (transformers' loss): the logits, their fp32 copy and the saved log-softmax."""
    hidden, vocab = config.hidden_size, config.vocab_size
    if path == "full":
        return length * vocab * (dtype.itemsize + 4 + 4), 0
    head = model.get_output_embeddings()
    fixed = 3 * 4 * CHUNK_ELEMENTS + (4 * head.weight.numel() if head.weight.requires_grad else 0)
    return 2 * length * hidden * dtype.itemsize, fixed
