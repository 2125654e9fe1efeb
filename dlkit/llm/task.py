"""Instruction fine-tuning as an engine Task, and `train(cfg)`, the function behind `dlkit llm train`.

Batches are length-grouped (conversations of similar length share a batch, so little padding is
computed); with --packing, conversations share rows but keep their own position ids and a block-diagonal
mask, so no token attends across conversations either way. The loss runs the LM head only on labelled
(assistant) positions, a large part of the compute of a small model's vocabulary projection; with DDP or
FSDP the plain `model(..., labels=...)` forward is used so gradients synchronise and parameters are gathered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.core.config import checked
from dlkit.core.engine import mean_loss, save_trained, tensor_digest
from dlkit.core.errors import RunError
from dlkit.core.modelcard import CardInfo
from dlkit.core.progress import info
from dlkit.core.run import Run, atomic_write_json
from dlkit.core.sharding import calls_the_root
from dlkit.core.splits import record_splits
from dlkit.core.task import SizedDataset, Task
from dlkit.llm import methods
from dlkit.llm.config import LlmConfig
from dlkit.llm.data import IGNORE, ListDataset, build_splits, length_grouped_plan, pack, pad_batch, pad_packed
from dlkit.llm.generate import generate, prompts_and_references
from dlkit.llm.models import (
    INFO_FILE,
    base_info,
    card_info,
    load_model,
    load_tokenizer,
    resolve_model,
    weight_files,
)
from dlkit.nn.losses import linear_cross_entropy
from dlkit.nn.neftune import NEFTune


def causal_lm_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token loss over labelled positions, projecting only those positions through the LM head.

    A plain linear head goes through the chunked cross-entropy (dlkit.nn.losses): the (N, V) logits never
    exist at once, which is most of a step's memory with a 256k vocabulary. A head that a method wraps
    (LoRA on lm_head) is called as a module.
    """
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = lm.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), position_ids=batch.get("position_ids")
    )[0]  # (B, T, H)
    targets = batch["labels"][:, 1:]  # position t predicts token t+1
    keep = targets != IGNORE
    hidden, targets = hidden[:, :-1][keep], targets[keep]  # (N, H), (N,)
    head = lm.get_output_embeddings()
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if type(head) is nn.Linear and head.bias is None:
        return linear_cross_entropy(hidden, head.weight, targets, cap) / len(targets)
    logits = head(hidden)  # (N, V)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return F.cross_entropy(logits.float(), targets)


def _attention(model: nn.Module) -> str:
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return getattr(inner.config, "_attn_implementation", None) or "eager"


class ParamSnapshot:
    """What the base weights were before training, to show afterwards which ones moved and by how many elements.

    A trainable weight is compared element by element with the checkpoint it was loaded from, read back lazily
    (a copy is kept only when the checkpoint has no tensor of that name); a frozen one keeps a digest (it must
    not move at all; if it did, its whole size counts). The Parameter objects are kept: PEFT wraps modules but
    trains (or freezes) the same tensors, so the comparison needs no name mapping.
    """

    def __init__(self, base_params: list[tuple[str, nn.Parameter]], files: dict[str, Path]):
        """`base_params`: the base's named parameters listed before the method wrapped it, taken once the
        method has chosen which of them train; `files`: where the checkpoint holds each (`weight_files`)."""
        self.entries = [(name, p, self.before(name, p, files)) for name, p in base_params]

    @staticmethod
    def before(name: str, param: nn.Parameter, files: dict[str, Path]) -> Any:
        if not param.requires_grad:
            return param.dtype, tensor_digest(param)
        return files[name] if name in files else param.detach().clone()

    def report(self, trained: nn.Module) -> dict[str, Any]:
        from safetensors import safe_open

        changed: dict[str, int] = {}
        for name, p, before in self.entries:
            if isinstance(before, Path):
                with safe_open(str(before), framework="pt") as f:
                    before = f.get_tensor(name)
            if isinstance(before, torch.Tensor):
                count = int((p.detach() != before.to(p.device, p.dtype)).sum())
            else:
                dtype, digest = before
                count = p.numel() if tensor_digest(p.detach().to(dtype)) != digest else 0
            if count:
                changed[name] = count
        trainable_base = [name for name, p, _ in self.entries if p.requires_grad]
        base_ids = {id(p) for _, p, _ in self.entries}
        added = [(n, p) for n, p in trained.named_parameters() if id(p) not in base_ids and p.requires_grad]
        numel = {name: p.numel() for name, p, _ in self.entries}
        trainable_set = set(trainable_base)
        return {
            "changed_param_names": list(changed),
            "changed_params": sum(changed.values()),  # elements
            "trainable_param_names": trainable_base + [n for n, _ in added],
            "trainable_base_params": sum(numel[n] for n in trainable_base),
            "adapter_params": sum(p.numel() for _, p in added),
            "frozen_changed": [n for n in changed if n not in trainable_set],
        }


class LlmTask(Task):
    def __init__(self, cfg: LlmConfig):
        self.cfg = cfg
        self.method = methods.METHODS[cfg.method]
        self.base = resolve_model(cfg.model)
        self.tokenizer = load_tokenizer(self.base)
        self.splits = build_splits(cfg, self.tokenizer)
        counts = self.splits.counts
        self.skipped_items = (
            counts["no_assistant_turn"] + counts["empty_turn"] + counts["malformed"] + counts["dropped_long"]
        )
        self.param_report: dict[str, Any] = {}
        self.arch = ""
        self.neftune = NEFTune(cfg.neftune_alpha) if cfg.neftune_alpha else None
        if counts["system_merged"]:
            info(
                f"note: this model's chat template has no system role; the system text of "
                f"{counts['system_merged']} conversations was merged into their first user turn"
            )

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        model = load_model(self.base, quantize=cfg.quantize, precision=cfg.precision)
        self.arch = model.config.model_type
        if cfg.quantize != "none":
            from peft import prepare_model_for_kbit_training

            # the quantized layers frozen, the other weights in fp32, inputs that carry gradients (QLoRA's recipe)
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        base_params = list(model.named_parameters())
        model = methods.build(model, cfg, self.base.path)
        self.snapshot = ParamSnapshot(base_params, weight_files(self.base))
        if self.method.family != "soft-prompt":
            model.config.use_cache = False
        if self.neftune is not None:
            self.neftune.attach(model.get_input_embeddings())
        return model

    def datasets(self) -> tuple[ListDataset, ListDataset | None]:
        val = ListDataset(self.splits.val.examples) if self.splits.val.examples else None
        train = self.splits.train.examples
        if self.cfg.packing:
            train = pack(train, self.cfg.max_length)
            info(
                f"packing: {len(self.splits.train.examples)} conversations into {len(train)} rows of <= "
                f"{self.cfg.max_length} tokens"
            )
        return ListDataset(train), val

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "doc_ids" in examples[0]:
            return pad_packed(examples, self.tokenizer.pad_token_id)
        return pad_batch(examples, self.tokenizer.pad_token_id)

    def batch_plan(self, dataset: SizedDataset, batch_size: int, gen: torch.Generator) -> list[list[int]]:
        assert isinstance(dataset, ListDataset)  # the one datasets() returns
        return length_grouped_plan(dataset.lengths, batch_size, gen)

    def num_items(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"][:, 1:] != IGNORE).sum())  # the labelled next-token positions the loss averages

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        real = batch.pop("token_mask", None)  # packed batches: the non-pad tokens (their mask is 4D)
        if self.neftune is None:
            return self.loss(model, batch, real)
        with self.neftune.lengths_of(
            batch["attention_mask"] if real is None else real, batch.get("position_ids") if real is not None else None
        ):
            return self.loss(model, batch, real)

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], real: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict]:
        if real is not None and _attention(model) != "eager":
            batch["attention_mask"] = batch["attention_mask"] == 0  # sdpa takes a boolean mask in any precision
        if self.method.family == "soft-prompt" or calls_the_root(model):
            loss = model(**batch).loss
        elif real is None:
            # Rows are right-padded and attention is causal, so no real token ever sees a pad: the padding
            # mask changes nothing that is scored. Without it attention takes the mask-free causal path
            # (about 10% of a tiny model's step on CPU, measured in benchmarks/llm_throughput.py).
            loss = causal_lm_loss(model, {k: v for k, v in batch.items() if k != "attention_mask"})
        else:
            loss = causal_lm_loss(model, batch)
        return loss, {"tokens": (real if real is not None else batch["attention_mask"]).sum()}

    def evaluate(self, model: nn.Module, loader: Any, accel: Any) -> dict[str, float]:
        import math

        loss = mean_loss(self, model, loader, accel)
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}

    def on_eval(self, model: nn.Module, run: Run, step: int) -> None:
        conversations = self.splits.test[:4] or self.splits.val.conversations[:4]
        if not conversations:
            return
        prompts, refs = prompts_and_references(self.tokenizer, conversations)
        answers = generate(model, self.tokenizer, prompts, self.cfg.max_new_tokens, max_length=self.cfg.max_length)
        lines = [f"# samples at step {step}\n"]
        for conv, answer, ref in zip(conversations, answers, refs, strict=True):
            question = next(m["content"] for m in reversed(conv) if m["role"] == "user")
            lines.append(f"**question:** {question}\n\n**answer:** {answer}\n\n**reference:** {ref}\n\n---\n")
        run.write_text(f"samples/step_{step:07d}.md", "\n".join(lines))

    def save_model(self, model: nn.Module, path: Path) -> None:
        self.param_report = self.snapshot.report(model)
        path.mkdir(parents=True, exist_ok=True)
        if self.method.family == "partial":  # the unfrozen layers; `llm export --merge` writes the whole model
            save_trained(model, self.trained_names(model), self.base.identity, path)
        else:
            model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        atomic_write_json(path / INFO_FILE, self.info())

    def card_info(self) -> CardInfo:
        return card_info(self.info())

    def info(self) -> dict[str, Any]:
        return {
            **base_info(self.base),
            "method": self.method.name,
            "family": self.method.family,
            "peft": self.method.peft,
            "arch": self.arch,
            "quantize": self.cfg.quantize,
            "precision": self.cfg.precision,
        }

    def summary(self) -> dict[str, Any]:
        counts = self.splits.counts
        return {
            "method": self.method.name,
            "family": self.method.family,
            "arch": self.arch,
            "quantize": self.cfg.quantize,
            "base": self.base.identity,
            "train_examples": len(self.splits.train.examples),
            "val_examples": len(self.splits.val.examples),
            "test_examples": len(self.splits.test),
            "truncated": counts["truncated"],
            "dropped_long": counts["dropped_long"],
            "no_assistant_turn": counts["no_assistant_turn"],
            "empty_turn": counts["empty_turn"],
            "malformed_rows": counts["malformed"],
        }


def train(cfg: LlmConfig) -> dict[str, Any]:
    """Fine-tune cfg.model on cfg.data with cfg.method; returns metrics.json (with the parameter-change report)."""
    from dlkit.core.engine import fit

    checked(cfg)
    task = LlmTask(cfg)
    run = Run.create("llm", cfg, default_name=cfg.method)
    record_splits(run, task.splits.data_splits(), resume=cfg.resume)
    metrics = fit(task, cfg, run)
    if run.writer and task.param_report:
        report = task.param_report
        metrics = {**metrics, **{k: v for k, v in report.items() if k != "frozen_changed"}}
        run.write_metrics(metrics)
        if report["frozen_changed"]:
            raise RunError(f"frozen weights changed during training: {', '.join(report['frozen_changed'][:5])}")
    return metrics
