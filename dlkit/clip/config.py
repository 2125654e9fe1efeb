"""Configs of the clip commands. The evaluation commands (zeroshot, templates, fix-class, retrieve) share
`ClipSource`; the trained ones (train, coop, probe) extend the engine's TrainConfig. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dlkit.core.config import REQUIRED, RunOutput, TrainConfig, opt, run_field, shared
from dlkit.core.errors import ConfigError

MODEL_HELP = (
    "open_clip architecture (convnext_base, RN50, ViT-B-32), a `clip train` run folder, hf-hub:ORG/REPO, "
    "or builtin:tiny-clip."
)
PRETRAINED_HELP = (
    "open_clip pretrained tag (e.g. laion400m_s13b_b51k, openai), a weights file (safetensors, or a "
    "pickle of tensors only), or none for random weights. default: the architecture's first tag in "
    "open_clip's list of pretrained tags; random weights, with a warning, when those cannot be "
    "downloaded."
)
DATA_HELP = (
    "ImageFolder (class subfolders, optionally under train/ and test/), a torchvision CIFAR-10 folder, a Hub "
    "dataset id, or builtin:NAME."
)
CLASSNAMES_HELP = (
    "File with one class name per line, in the order of the sorted class folders (default: cleaned folder names)."
)


@dataclass
class ClipSource:
    """Which model, weights and labelled images; shared by every command that classifies."""

    model: str = opt("builtin:tiny-clip", MODEL_HELP, path="model")
    pretrained: str = opt("default", PRETRAINED_HELP, path="weights")
    data: str = opt("builtin:shape-classes", DATA_HELP, path="data")
    split: str = opt("test", "Split folder to classify when --data has train/ and test/ subfolders.")
    classnames: str | None = opt(None, CLASSNAMES_HELP, path="file")
    templates: list[str] = opt(
        ["simple"],
        "Prompt templates: a set (simple, imagenet80, dogs), a file with one "
        "template per line, or literal strings with {}; repeat to combine. Several are "
        "ensembled.",
    )
    batch_size: int = opt(64, "Images per forward pass when encoding.", min=1)
    num_workers: int = opt(0, "DataLoader worker processes for image decoding.", min=0)
    seed: int = opt(0, "Seed for random weights and splits.")
    output_dir: str | None = opt(None, "Result folder. Default: runs/clip/NAME.", path="output")
    name: str | None = opt(None, "Result name under runs/clip/. Default: derived from the command and time.")
    overwrite: bool = opt(
        False, "Replace a result folder dlkit wrote for this command (only its own files).", saved=False
    )
    strict: bool = opt(False, "Fail on the first undecodable image instead of skipping and counting it.")

    run_folder: ClassVar[bool] = True

    def validate(self) -> None:
        if not self.templates:
            raise ConfigError("--templates needs at least one template or set name")


@dataclass
class ZeroShotConfig(ClipSource):
    """`dlkit clip zeroshot`."""

    worst: int = opt(5, "How many worst classes (lowest F1) to list.", min=0)

    command: ClassVar[tuple[str, str]] = ("clip", "zeroshot")


@dataclass
class TemplatesConfig(ClipSource):
    """`dlkit clip templates`."""

    sets: str = opt(
        "simple,imagenet80", "Comma-separated template sets or files to compare (simple, imagenet80, dogs, FILE)."
    )

    command: ClassVar[tuple[str, str]] = ("clip", "templates")


@dataclass
class FixClassConfig(ClipSource):
    """`dlkit clip fix-class`."""

    class_name: str = opt(
        REQUIRED,
        "The class to fix (a cleaned class name as in the zeroshot report).",
        flags=("--class",),
        example="circle",
    )
    candidates: str = opt(
        REQUIRED,
        "File of candidate templates for that class, one per line, each with {}.",
        path="file",
        example="a photo of a {}.",
    )

    command: ClassVar[tuple[str, str]] = ("clip", "fix-class")


HOLDOUT_HELP = "Fraction of each class held out for testing when --data has no split folders."
VAL_FRACTION_HELP = (
    "Fraction of each class of the train split held out for validation (early stopping, --monitor); "
    "the test split is scored once, at the end."
)


@dataclass
class CoopConfig(ClipSource, TrainConfig):
    mode: Literal["embedding", "prompt"] = opt(
        "embedding",
        "embedding: one trainable vector per class, "
        "initialised from the zero-shot text embeddings; prompt: CoOp "
        "class-specific context tokens through the frozen text encoder.",
    )
    n_ctx: int = opt(4, "Learnable context tokens per class (--mode prompt).", min=1)
    train_split: str = opt("train", "Split folder to train on (a held-out part of --data when it has none).")
    holdout: float = opt(0.25, HOLDOUT_HELP, above=0, below=1)
    val_fraction: float = opt(0.1, VAL_FRACTION_HELP, above=0, below=1)
    epochs: int = shared("epochs", 20)
    batch_size: int = shared("batch_size", 32)
    lr: float = shared("lr", 2e-3)
    scheduler: Literal["constant", "linear", "cosine"] = shared("scheduler", "cosine")
    monitor: str = shared("monitor", "val_accuracy")
    monitor_mode: Literal["min", "max"] = shared("monitor_mode", "max")

    command: ClassVar[tuple[str, str]] = ("clip", "coop")

    def validate(self) -> None:
        TrainConfig.validate(self)
        ClipSource.validate(self)


@dataclass
class ProbeConfig(ClipSource, TrainConfig):
    train_split: str = opt("train", "Split folder to train on (a held-out part of --data when it has none).")
    holdout: float = opt(0.25, HOLDOUT_HELP, above=0, below=1)
    val_fraction: float = opt(0.1, VAL_FRACTION_HELP, above=0, below=1)
    epochs: int = opt(30, "Passes over the cached training features.", min=1)
    batch_size: int = opt(256, "Feature vectors per step.", min=1)
    lr: float = shared("lr", 1e-2)
    weight_decay: float = opt(0.0, "Weight decay on the linear layer.", min=0)
    scheduler: Literal["constant", "linear", "cosine"] = shared("scheduler", "cosine")
    monitor: str = shared("monitor", "val_accuracy")
    monitor_mode: Literal["min", "max"] = shared("monitor_mode", "max")
    log_every: int = shared("log_every", 50)

    command: ClassVar[tuple[str, str]] = ("clip", "probe")

    def validate(self) -> None:
        TrainConfig.validate(self)
        ClipSource.validate(self)


@dataclass
class ClipTrainConfig(TrainConfig):
    data: str = opt(
        "builtin:shapes",
        "Image-caption pairs: a Flickr8k/COCO folder, a Hub dataset id, or builtin:shapes.",
        path="data",
    )
    model: str = opt(
        "scratch", "Only 'scratch': CLIP is built from --image-encoder and the text-tower flags.", cli=False
    )
    image_encoder: Literal["rn50", "resnet-small", "vit-small"] = opt(
        "resnet-small", "Image tower: open_clip's RN50 ResNet-50, or a small ResNet/ViT for CPUs."
    )
    image_size: int | None = opt(None, "Input size (default: the tower's, 224 for rn50, 64 for the small ones).", min=1)
    embed_dim: int = opt(64, "Size of the joint image-text space.", min=1)
    text_width: int = opt(64, "Text transformer width.", min=1)
    text_layers: int = opt(2, "Text transformer layers.", min=1)
    text_heads: int = opt(4, "Text transformer attention heads.", min=1)
    context_length: int = opt(32, "Tokens per caption (longer ones are cut).", min=1)
    strict: bool = opt(False, "Fail on the first missing/undecodable image instead of skipping and counting it.")
    epochs: int = opt(10, "Passes over the image-caption pairs.", min=1)
    batch_size: int = opt(64, "Pairs per batch: each image's negatives are the other captions in the batch.", min=1)
    lr: float = shared("lr", 1e-3)
    weight_decay: float = opt(0.1, "AdamW weight decay (weights with >= 2 dims).", min=0)
    warmup: float = shared("warmup", 0.05)
    scheduler: Literal["constant", "linear", "cosine"] = shared("scheduler", "cosine")
    monitor: str = shared("monitor", "val_mean_recall")
    monitor_mode: Literal["min", "max"] = shared("monitor_mode", "max")

    command: ClassVar[tuple[str, str]] = ("clip", "train")

    def validate(self) -> None:
        super().validate()
        if self.image_size is not None and self.image_encoder != "vit-small" and self.image_size % 32:
            raise ConfigError(f"--image-size {self.image_size}: ResNet towers need a positive multiple of 32")
        if self.text_width % self.text_heads:
            raise ConfigError(f"--text-width {self.text_width} must be divisible by --text-heads {self.text_heads}")


@dataclass(kw_only=True)
class RetrievalEvalConfig(RunOutput):
    """`clip eval-retrieval`: recall@k of a `clip train` run or an open_clip model on a captions split."""

    run: str | None = run_field(
        "clip", "A `clip train` run folder: its model, on its own data split (results go into it).", required=False
    )
    model: str | None = opt(
        None,
        "Instead of --run: an open_clip architecture, hf-hub:ORG/REPO, a model folder, or builtin:tiny-clip.",
        path="model",
    )
    pretrained: str = opt(
        "default", "Pretrained tag of --model (as in `clip zeroshot`), a weights file, or none.", path="weights"
    )
    data: str | None = opt(
        None,
        "Image-caption pairs: a Flickr8k/COCO folder, a Hub dataset id or builtin:shapes. "
        "Default: the run's --data (with --model: builtin:shapes).",
        path="data",
    )
    split: str = opt(
        "test",
        "Split to score: test, validation, or train (only when asked for). Data that names "
        "no splits is cut 80/10/10 by image with --seed (a run's own seed with --run).",
    )
    seed: int = opt(0, "Seed of the 80/10/10 cut with --model (and of random weights).")
    batch_size: int = opt(64, "Images per forward pass when encoding.", min=1)
    strict: bool = opt(False, "Fail on the first missing/undecodable image instead of skipping and counting it.")

    command: ClassVar[tuple[str, str]] = ("clip", "eval-retrieval")

    def validate(self) -> None:
        if (self.run is None) == (self.model is None):
            raise ConfigError(
                "pass either --run (a `clip train` run) or --model (with --pretrained), not both or neither"
            )


@dataclass
class PrepareConfig:
    """`dlkit clip prepare`."""

    data: str = opt("builtin:shape-classes", DATA_HELP, path="data")
    classnames: str | None = opt(None, CLASSNAMES_HELP, path="file")
    output_dir: str = opt("runs/clip/prepare", "Where plots/ and stats.json go.", path="output")
    seed: int = opt(0, "Seed of the sample grid.")
    overwrite: bool = opt(
        False, "Replace what an earlier `clip prepare` wrote there (only its own files).", saved=False
    )

    command: ClassVar[tuple[str, str]] = ("clip", "prepare")


@dataclass
class RetrieveConfig:
    """`dlkit clip retrieve`."""

    query: str = opt(REQUIRED, "The text to search for.", example="a red circle")
    images: str = opt(
        REQUIRED,
        "A folder of images (searched recursively) or builtin:NAME.",
        path="folder",
        example="builtin:shape-classes",
    )
    run: str | None = run_field("clip", "A `clip train` run folder.", required=False)
    model: str | None = opt(None, "An open_clip architecture instead of --run.", path="model")
    pretrained: str = opt(
        "default", "Pretrained tag for --model, or none; default: the architecture's first tag.", path="weights"
    )
    k: int = opt(9, "How many images to return.", flags=("-k", "--k"), min=1)
    batch_size: int = opt(64, "Images per forward pass when encoding.", min=1)
    output_dir: str | None = opt(
        None,
        "Folder for grid.png and results.json (default: the run's samples/ or "
        "runs/clip/retrieve); --output is an alias.",
        flags=("--output-dir", "--output"),
        path="output",
    )
    overwrite: bool = opt(False, "Replace what an earlier retrieval wrote there (only its own files).", saved=False)

    command: ClassVar[tuple[str, str]] = ("clip", "retrieve")

    def validate(self) -> None:
        if (self.run is None) == (self.model is None):
            raise ConfigError(
                "pass either --run (a `clip train` run) or --model (with --pretrained), not both or neither"
            )
        if not self.query.strip():
            raise ConfigError("--query is empty; describe the images to find, e.g. --query 'a dog'")
