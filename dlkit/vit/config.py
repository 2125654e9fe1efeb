"""Settings of the vit commands (no torch import: the CLI builds its flags from these dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dlkit.builtin import listed
from dlkit.classify.classifier import VAL_FRACTION_HELP, ClassifierConfig, classifier_configs
from dlkit.core.config import REQUIRED, PlanOptions, opt, run_field, shared
from dlkit.core.errors import ConfigError
from dlkit.vit.methods import METHODS, method_help

DATA_HELP = (
    "Images: builtin:digits, an ImageFolder (CLASS/IMAGE, or train/ with optional validation/ and test/ of "
    "CLASS/IMAGE), or a Hub dataset id (food101, cifar10)."
)


@dataclass
class VitConfig(ClassifierConfig):
    data: str = opt("builtin:digits", DATA_HELP, path="data")
    model: str = opt(
        "builtin:tiny-vit",
        f"ViT/DeiT: {listed('vit', 'model')}, a save_pretrained folder "
        "or a Hub id (google/vit-base-patch16-224-in21k).",
        path="model",
    )
    method: str = opt("lora", method_help(), choices=tuple(METHODS))
    epochs: int = shared("epochs", 3)
    batch_size: int = opt(32, "Images per micro-batch per process.", min=1)
    lr: float = opt(
        5e-3,
        "Peak learning rate (LoRA and new heads like ~1e-3..1e-2; full fine-tuning of a pretrained model ~5e-5).",
        above=0,
    )
    warmup: float = shared("warmup", 0.1)
    lora_r: int = opt(8, "LoRA rank.", min=1)
    lora_alpha: int = opt(16, "LoRA scale numerator (the update is scaled by alpha / r).")
    lora_dropout: float = opt(0.1, "Dropout on the LoRA input.", min=0, below=1)
    target_modules: str = opt(
        "auto",
        "Comma-separated Linear names LoRA adapts; auto = the attention query and "
        "value projections (q_proj,v_proj or query,value).",
    )
    augment: bool = opt(False, "Light training augmentation: random resized crops (scale 0.8-1) and colour jitter.")
    image_size: int | None = opt(
        None,
        "Resize images to this side; default: the image processor's size. Other "
        "sizes interpolate the position embeddings.",
        min=1,
    )
    image_col: str | None = opt(None, "Hub datasets: the image column (default: the first Image feature).")
    label_col: str | None = opt(None, "Hub datasets: the label column (default: the first ClassLabel feature).")

    command: ClassVar[tuple[str, str]] = ("vit", "train")

    def validate(self) -> None:
        super().validate()
        if not [m for m in self.target_modules.split(",") if m.strip()]:
            raise ConfigError("--target-modules is empty; pass auto or names such as q_proj,v_proj")


@dataclass
class PrepareConfig:
    """`dlkit vit prepare`."""

    data: str = opt("builtin:digits", DATA_HELP, path="data")
    output_dir: str = opt("runs/vit/prepare", "Where plots/ and stats.json go.", path="output")
    val_fraction: float = opt(0.1, VAL_FRACTION_HELP, above=0, below=1)
    seed: int = opt(0, "Seed of the holdout and of the sample grid.")
    overwrite: bool = opt(False, "Replace what an earlier `vit prepare` wrote there (only its own files).", saved=False)

    command: ClassVar[tuple[str, str]] = ("vit", "prepare")


EvalConfig, PredictConfig = classifier_configs(
    "vit",
    "images",
    opt(
        REQUIRED,
        "Image files (any mode: grayscale/RGBA are converted).",
        argument=True,
        path="image",
        example="{image}",
    ),
    "image",
)


@dataclass
class ExportConfig:
    """`dlkit vit export`: a run's model as plain transformers weights."""

    run: str = run_field("vit")
    out: str | None = opt(None, "Output folder (default: RUN/export).", path="output")
    overwrite: bool = opt(False, "Replace an earlier export in --out (only dlkit's files).", saved=False)

    command: ClassVar[tuple[str, str]] = ("vit", "export")


@dataclass(kw_only=True)
class PlanConfig(PlanOptions):
    """`dlkit vit plan`: the peak memory a `vit train` with these settings needs per process, from config.json
    alone."""

    model: str = shared("model", "builtin:tiny-vit", VitConfig)
    method: str = shared("method", "lora", VitConfig)
    lora_r: int = shared("lora_r", 8, VitConfig)
    lora_alpha: int = shared("lora_alpha", 16, VitConfig)
    lora_dropout: float = shared("lora_dropout", 0.1, VitConfig)
    target_modules: str = shared("target_modules", "auto", VitConfig)
    num_classes: int = opt(10, "Classes of the data (the classifier's outputs).", min=1)
    image_size: int | None = shared("image_size", None, VitConfig)
    batch_size: int = shared("batch_size", 32, VitConfig)

    command: ClassVar[tuple[str, str]] = ("vit", "plan")
