"""`dlkit vit plan`: the peak memory per process of `dlkit vit train` with the same settings, predicted from the
model's config.json (dlkit.core.plan): the method applied to a meta-device classifier and one meta forward pass of
a batch of images."""

from __future__ import annotations

from typing import Any

import torch

from dlkit.core import plan as core
from dlkit.core.config import checked
from dlkit.vit import models
from dlkit.vit.config import PlanConfig
from dlkit.vit.task import forward


def plan(cfg: PlanConfig) -> dict[str, Any]:
    """The plan as a dict (GiB per part, total, whether it fits and the largest batch that does)."""
    from transformers import AutoConfig, AutoModelForImageClassification, DeiTForImageClassification

    checked(cfg)
    config = AutoConfig.from_pretrained(models.model_folder(cfg.model))
    config.num_labels = cfg.num_classes
    core.register_attention(core.PLAN_ATTENTION, core.fused_attention)
    model_class = DeiTForImageClassification if config.model_type == "deit" else AutoModelForImageClassification
    with torch.device("meta"):
        model = model_class.from_config(config, attn_implementation=core.PLAN_ATTENTION)
    stored = core.stored_dtype(config)
    model = models.apply_method(model, cfg)
    weights, trainable = core.parameter_bytes(model, stored, cfg.precision)
    parts = {"weights": weights, **core.state_bytes(trainable, cfg.optimizer, cfg.processes)}

    compute = core.COMPUTE_DTYPES[cfg.precision]
    model.to(compute)
    side = cfg.image_size or config.image_size
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    blocks = models.encoder_blocks(inner)

    def saved(batch: int) -> int:
        pixels = torch.empty(batch, config.num_channels, side, side, device="meta", dtype=compute)
        found = core.saved_tensors(model, lambda: forward(model, pixels), blocks)
        return core.activation_bytes(found, cfg.gradient_checkpointing)

    one, two = saved(1), saved(2)
    logits_per_example = 3 * 4 * cfg.num_classes  # the logits, their fp32 log-softmax and its gradient
    parts["activations"] = one + (two - one) * (cfg.batch_size - 1)
    parts["logits"] = logits_per_example * cfg.batch_size
    notes = [
        f"{config.model_type}: {sum(p.numel() for p in inner.parameters()):,} parameters stored in "
        f"{str(stored).removeprefix('torch.')}; {trainable:,} train ({cfg.method})",
        f"images {side}x{side}; attention: a fused kernel (q, k, v, output and log-sum-exp saved)",
    ]
    result = core.MemoryPlan(
        cfg.batch_size, {name: parts[name] for name in core.PARTS}, two - one + logits_per_example, notes
    )
    settings = {
        "what": f"{cfg.model} · {cfg.method} · batch {cfg.batch_size} x {side}px",
        "model": cfg.model,
        "method": cfg.method,
        "precision": cfg.precision,
        "image_size": side,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "processes": cfg.processes,
    }
    return core.plan_result(settings, result, cfg.gpu_memory)
