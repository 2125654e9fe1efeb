"""Configs of the clip commands. The evaluation commands (zeroshot, templates, fix-class, retrieve) share
`ClipSource`; the trained ones (train, coop, probe) extend the engine's TrainConfig. No torch here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dlkit.core.config import RunOutput, TrainConfig, opt, shared
from dlkit.core.errors import ConfigError


def _templates(default: list[str], help: str):
    return field(default_factory=lambda: list(default), metadata={"help": help, "cli": True, "saved": True})


@dataclass
class ClipSource:
    """Which model, weights and labelled images; shared by every command that classifies."""

    model: str = opt("builtin:tiny-clip", "open_clip architecture (convnext_base, RN50, ViT-B-32), a `clip train` "
                                          "run folder, hf-hub:ORG/REPO, or builtin:tiny-clip.")
    pretrained: str = opt("default", "open_clip pretrained tag (e.g. laion400m_s13b_b51k, openai), a weights "
                                     "file, or none for random weights. default: the architecture's first tag "
                                     "in open_clip's list of pretrained tags; random weights, with a warning, "
                                     "when those cannot be downloaded.")
    data: str = opt("builtin:shape-classes", "ImageFolder (class subfolders, optionally under train/ and test/), "
                                             "a torchvision CIFAR-10 folder, a Hub dataset id, or builtin:NAME.")
    split: str = opt("test", "Split folder to classify when --data has train/ and test/ subfolders.")
    classnames: str | None = opt(None, "File with one class name per line, in the order of the sorted class "
                                       "folders (default: cleaned folder names).")
    templates: list[str] = _templates(["simple"], "Prompt templates: a set (simple, imagenet80, dogs), a file "
                                                  "with one template per line, or literal strings with {}; "
                                                  "repeat to combine. Several are ensembled.")
    batch_size: int = opt(64, "Images per forward pass when encoding.")
    num_workers: int = opt(0, "DataLoader worker processes for image decoding.")
    seed: int = opt(0, "Seed for random weights and splits.")
    output_dir: str | None = opt(None, "Result folder. Default: runs/clip/NAME.")
    name: str | None = opt(None, "Result name under runs/clip/. Default: derived from the command and time.")
    overwrite: bool = opt(False, "Replace an existing result folder.", saved=False)
    strict: bool = opt(False, "Fail on the first undecodable image instead of skipping and counting it.")

    resume = False  # results folders are written in one go; Run.create reads this

    def validate(self) -> None:
        if self.batch_size <= 0:
            raise ConfigError(f"--batch-size must be > 0 (got {self.batch_size})")
        if not self.templates:
            raise ConfigError("--templates needs at least one template or set name")


@dataclass
class ZeroShotConfig(ClipSource):
    worst: int = opt(5, "How many worst classes (lowest F1) to list.")


@dataclass
class TemplatesConfig(ClipSource):
    sets: str = opt("simple,imagenet80", "Comma-separated template sets or files to compare "
                                         "(simple, imagenet80, dogs, FILE).")


@dataclass
class FixClassConfig(ClipSource):
    class_name: str = opt("", "The class to fix (a cleaned class name as in the zeroshot report).")
    candidates: str = opt("", "File of candidate templates for that class, one per line, each with {}.")

    def validate(self) -> None:
        super().validate()
        if not self.class_name:
            raise ConfigError("--class is required: the class whose templates to try")
        if not self.candidates:
            raise ConfigError("--candidates is required: a file of templates, one per line")


@dataclass
class CoopConfig(ClipSource, TrainConfig):
    mode: Literal["embedding", "prompt"] = opt("embedding", "embedding: one trainable vector per class, "
                                               "initialised from the zero-shot text embeddings; prompt: CoOp "
                                               "class-specific context tokens through the frozen text encoder.")
    n_ctx: int = opt(4, "Learnable context tokens per class (--mode prompt).")
    train_split: str = opt("train", "Split folder to train on (a held-out part of --data when it has none).")
    holdout: float = opt(0.25, "Fraction of each class held out for testing when --data has no split folders.")
    val_fraction: float = opt(0.1, "Fraction of each class of the train split held out for validation (early "
                                   "stopping, --monitor); the test split is scored once, at the end.")
    epochs: int = shared("epochs", 20)
    batch_size: int = shared("batch_size", 32)
    lr: float = shared("lr", 2e-3)
    scheduler: Literal["constant", "linear", "cosine"] = shared("scheduler", "cosine")
    monitor: str = shared("monitor", "val_accuracy")
    monitor_mode: Literal["min", "max"] = shared("monitor_mode", "max")

    def validate(self) -> None:
        TrainConfig.validate(self)
        ClipSource.validate(self)
        if self.n_ctx < 1:
            raise ConfigError(f"--n-ctx must be >= 1 (got {self.n_ctx})")
        if not 0 < self.holdout < 1:
            raise ConfigError(f"--holdout must be between 0 and 1 (got {self.holdout})")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be between 0 and 1 (got {self.val_fraction})")


@dataclass
class ProbeConfig(ClipSource, TrainConfig):
    train_split: str = opt("train", "Split folder to train on (a held-out part of --data when it has none).")
    holdout: float = opt(0.25, "Fraction of each class held out for testing when --data has no split folders.")
    val_fraction: float = opt(0.1, "Fraction of each class of the train split held out for validation (early "
                                   "stopping, --monitor); the test split is scored once, at the end.")
    epochs: int = opt(30, "Passes over the cached training features.")
    batch_size: int = opt(256, "Feature vectors per step.")
    lr: float = shared("lr", 1e-2)
    weight_decay: float = opt(0.0, "Weight decay on the linear layer.")
    scheduler: Literal["constant", "linear", "cosine"] = shared("scheduler", "cosine")
    monitor: str = shared("monitor", "val_accuracy")
    monitor_mode: Literal["min", "max"] = shared("monitor_mode", "max")
    log_every: int = shared("log_every", 50)

    def validate(self) -> None:
        TrainConfig.validate(self)
        ClipSource.validate(self)
        if not 0 < self.holdout < 1:
            raise ConfigError(f"--holdout must be between 0 and 1 (got {self.holdout})")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be between 0 and 1 (got {self.val_fraction})")


@dataclass
class ClipTrainConfig(TrainConfig):
    data: str = opt("builtin:shapes", "Image-caption pairs: a Flickr8k/COCO folder, a Hub dataset id, or "
                                      "builtin:shapes.")
    model: str = opt("scratch", "Only 'scratch': CLIP is built from --image-encoder and the text-tower flags.",
                     cli=False)
    image_encoder: Literal["rn50", "resnet-small", "vit-small"] = opt(
        "resnet-small", "Image tower: open_clip's RN50 ResNet-50, or a small ResNet/ViT for CPUs.")
    image_size: int | None = opt(None, "Input size (default: the tower's, 224 for rn50, 64 for the small ones).")
    embed_dim: int = opt(64, "Size of the joint image-text space.")
    text_width: int = opt(64, "Text transformer width.")
    text_layers: int = opt(2, "Text transformer layers.")
    text_heads: int = opt(4, "Text transformer attention heads.")
    context_length: int = opt(32, "Tokens per caption (longer ones are cut).")
    strict: bool = opt(False, "Fail on the first missing/undecodable image instead of skipping and counting it.")
    epochs: int = opt(10, "Passes over the image-caption pairs.")
    batch_size: int = opt(64, "Pairs per batch: each image's negatives are the other captions in the batch.")
    lr: float = shared("lr", 1e-3)
    weight_decay: float = opt(0.1, "AdamW weight decay (weights with >= 2 dims).")
    warmup: float = shared("warmup", 0.05)
    scheduler: Literal["constant", "linear", "cosine"] = shared("scheduler", "cosine")
    monitor: str = shared("monitor", "val_mean_recall")
    monitor_mode: Literal["min", "max"] = shared("monitor_mode", "max")

    def validate(self) -> None:
        super().validate()
        for name in ("embed_dim", "text_width", "text_layers", "text_heads", "context_length"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0 (got {getattr(self, name)})")
        if self.image_size is not None and (self.image_size <= 0 or
                                            self.image_encoder != "vit-small" and self.image_size % 32):
            raise ConfigError(f"--image-size {self.image_size}: ResNet towers need a positive multiple of 32")
        if self.text_width % self.text_heads:
            raise ConfigError(f"--text-width {self.text_width} must be divisible by --text-heads {self.text_heads}")


@dataclass(kw_only=True)
class RetrievalEvalConfig(RunOutput):
    """`clip eval-retrieval`: recall@k of a `clip train` run or an open_clip model on a captions split."""

    run: str | None = opt(None, "A `clip train` run folder: its model, on its own data split (results go into it).")
    model: str | None = opt(None, "Instead of --run: an open_clip architecture, hf-hub:ORG/REPO, a model folder, or "
                                  "builtin:tiny-clip.")
    pretrained: str = opt("default", "Pretrained tag of --model (as in `clip zeroshot`), a weights file, or none.")
    data: str | None = opt(None, "Image-caption pairs: a Flickr8k/COCO folder, a Hub dataset id or builtin:shapes. "
                                 "Default: the run's --data (with --model: builtin:shapes).")
    split: str = opt("test", "Split to score: test, validation, or train (only when asked for). Data that names "
                             "no splits is cut 80/10/10 by image with --seed (a run's own seed with --run).")
    seed: int = opt(0, "Seed of the 80/10/10 cut with --model (and of random weights).")
    batch_size: int = opt(64, "Images per forward pass when encoding.")
    strict: bool = opt(False, "Fail on the first missing/undecodable image instead of skipping and counting it.")

    def validate(self) -> None:
        if (self.run is None) == (self.model is None):
            raise ConfigError("pass either --run (a `clip train` run) or --model (with --pretrained), not both or "
                              "neither")
        if self.batch_size <= 0:
            raise ConfigError(f"--batch-size must be > 0 (got {self.batch_size})")
