"""The charrnn Task for the engine, and `train(cfg)`, the function behind `dlkit charrnn train`."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit.charrnn import data, models
from dlkit.charrnn.config import CharRNNConfig
from dlkit.core import engine, plots
from dlkit.core.config import checked
from dlkit.core.errors import ConfigError
from dlkit.core.modelcard import CardInfo
from dlkit.core.progress import info
from dlkit.core.run import Run
from dlkit.core.splits import record_splits
from dlkit.core.task import SizedDataset, Task

GROUP = "charrnn"
LN2 = math.log(2.0)


def loss_metrics(loss: float, prefix: str) -> dict[str, float]:
    """Cross-entropy in nats, the same in bits per character, and perplexity."""
    return {f"{prefix}_loss": loss, f"{prefix}_bpc": loss / LN2, f"{prefix}_perplexity": math.exp(min(loss, 50.0))}


class CharRNNTask(Task):
    """Next-character prediction on random contiguous blocks of one text."""

    def __init__(self, cfg: CharRNNConfig) -> None:
        self.cfg = cfg
        self.text = data.load_text(cfg.data, cfg.encoding)
        self.init_from = None if cfg.model == "scratch" else pretrained_dir(cfg.model)
        if self.init_from is None:
            self.splits = data.split_text(self.text, cfg.block_size, cfg.val_fraction)
            self.spec = models.ModelSpec.from_config(cfg, len(self.splits.vocab))
        else:
            self.spec, chars = pretrained_spec(self.init_from, cfg)
            self.splits = data.split_text(self.text, cfg.block_size, cfg.val_fraction, vocab=data.Vocab(chars))
            info(
                f"--model {self.init_from}: fine-tuning its {self.spec.arch} (hidden {self.spec.hidden_size}, "
                f"{self.spec.num_layers} layers, {len(chars)} characters); the size flags are taken from it"
            )
        self.vocab = self.splits.vocab
        self.prompt = cfg.sample_prompt or self.text.text[0]
        unknown = self.vocab.unknown(self.prompt)
        if unknown:
            raise ConfigError(
                f"--sample-prompt has characters that are not in the text: {data.describe_chars(unknown)}"
            )
        # about one pass over the characters, but never so few batches that an epoch is all eval and checkpoints
        self.blocks_per_epoch = cfg.blocks_per_epoch or max(
            len(self.splits.train) // cfg.block_size, 100 * cfg.batch_size
        )
        self.last_eval: dict[str, float] = {}

    def build_model(self) -> nn.Module:
        model = models.build_model(self.spec)
        return model if self.init_from is None else models.load_weights(model, self.init_from)

    def datasets(self) -> tuple[data.TrainBlocks, data.ValBlocks]:
        return (
            data.TrainBlocks(self.splits.train, self.cfg.block_size),
            data.ValBlocks(self.splits.val, self.cfg.block_size, self.cfg.max_val_blocks),
        )

    def batch_plan(self, dataset: SizedDataset, batch_size: int, generator: torch.Generator) -> list[list[int]]:
        return data.random_block_plan(len(dataset), self.blocks_per_epoch, batch_size, generator)

    def collate(self, examples: list[Any]) -> dict[str, Any]:
        return data.collate_blocks(examples)

    def num_items(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["targets"].numel()  # every position predicts its next character

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        _, loss = model(batch["inputs"], batch["targets"])
        return loss, {"tokens": batch["inputs"].numel(), "bpc": loss.detach() / LN2}

    def evaluate(self, model: nn.Module, loader: Any, accel: Any) -> dict[str, float]:
        self.last_eval = loss_metrics(engine.mean_loss(self, model, loader, accel), "val")
        return self.last_eval

    def on_eval(self, model: nn.Module, run: Run, step: int) -> None:
        """A sample of the model at this step in samples/, and the bits-per-character curve in plots/."""
        if self.cfg.sample_chars:
            was_training = model.training
            model.eval()
            generator = torch.Generator().manual_seed(self.cfg.seed)
            ids = models.stream(
                model, self.vocab.encode(self.prompt).tolist(), self.cfg.sample_chars, generator=generator
            )
            run.write_text(f"samples/step_{step:07d}.txt", self.prompt + self.vocab.decode(list(ids)) + "\n")
            model.train(was_training)
        val = [(r["step"], r["val_bpc"]) for r in run.history("eval") if r.get("step", 0) < step]
        val.append((step, self.last_eval["val_bpc"]))
        train = [(r["step"], r["bpc"]) for r in run.history("train") if "bpc" in r and r["step"] <= step]
        self.plot_bpc(train, val, run.plots_dir / "val_bpc.png")

    def plot_bpc(self, train: list[tuple[int, float]], val: list[tuple[int, float]], path: Path) -> None:
        fig, ax = plots.new_figure(6, 4)
        if train:
            ax.plot(*zip(*train, strict=True), alpha=0.6, label=f"{self.spec.arch} training")
        ax.plot(*zip(*val, strict=True), marker="o", label=f"{self.spec.arch} validation")
        if self.text.entropy_rate is not None:
            ax.axhline(self.text.entropy_rate / LN2, color="gray", linestyle="--", label="entropy rate (optimum)")
        ax.axhline(math.log2(len(self.vocab)), color="red", linestyle=":", label="uniform guess")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("bits per character")
        ax.set_title(f"{self.text.spec}: bits per character")
        ax.legend()
        plots.save_figure(fig, path)

    def save_model(self, model: nn.Module, path: Path) -> None:
        models.save(model, self.spec, self.vocab.chars, path)

    def card_info(self) -> CardInfo:
        return CardInfo(
            what=f"character-level {self.spec.arch} language model",
            pipeline_tag="text-generation",
            usage_language="bash",
            usage="# dlkit's own format (weights as safetensors, the spec and the vocabulary as JSON), "
            "read by:\ndlkit charrnn sample --run RUN --prompt 'ROMEO:'   # RUN: the run folder "
            "around this one",
        )

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "arch": self.spec.arch,
            "vocab_size": len(self.vocab),
            "block_size": self.cfg.block_size,
            "train_chars": len(self.splits.train),
            "val_chars": len(self.splits.val),
        }
        if self.init_from is not None:
            out["init_from"] = str(self.init_from)
        if self.text.entropy_rate is not None:
            out["entropy_rate"] = self.text.entropy_rate
            out["optimal_bpc"] = self.text.entropy_rate / LN2
        return out


def pretrained_dir(spec: str) -> Path:
    """--model: a charrnn run folder (its checkpoints/final) or a final-model folder itself."""
    path = Path(spec).expanduser()
    if (path / "config.json").is_file():
        path = Run.open(path, group=GROUP).model_dir
    if not (path / models.MODEL_CONFIG).is_file():
        raise ConfigError(
            f"--model {spec} is not a charrnn run folder or trained model; pass 'scratch' or the "
            f"folder of a finished `dlkit charrnn train` run"
        )
    return path


def pretrained_spec(path: Path, cfg: CharRNNConfig) -> tuple[models.ModelSpec, str]:
    """The pretrained model's architecture and vocabulary; only dropout, attention kernel and (for RNNs) block
    size are new."""
    spec, chars = models.read_spec(path)
    if spec.arch == "transformer" and cfg.block_size > spec.block_size:
        raise ConfigError(
            f"--block-size {cfg.block_size} is longer than the pretrained transformer's context "
            f"({spec.block_size}); pass --block-size {spec.block_size} or less"
        )
    block_size = spec.block_size if spec.arch == "transformer" else cfg.block_size
    return dataclasses.replace(spec, dropout=cfg.dropout, block_size=block_size, attention=cfg.attention), chars


def train(cfg: CharRNNConfig) -> dict[str, Any]:
    """Train a character LM; the data is read and checked before the run folder is created."""
    checked(cfg)
    task = CharRNNTask(cfg)
    # Accelerate warns at every checkpoint that the tied head is stored once; it is reloaded tied, as intended.
    logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)
    run = Run.create(GROUP, cfg, default_name=task.spec.arch)
    record_splits(run, data.split_record(task.text, task.splits, cfg.val_fraction), resume=cfg.resume)
    if run.writer:
        run.write_json("vocab.json", task.vocab.to_json())
    return engine.fit(task, cfg, run)
