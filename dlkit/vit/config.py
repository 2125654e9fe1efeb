"""Settings of `dlkit vit train` (no torch import: the CLI builds its flags from this dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dlkit.core.classification import ClassifierConfig
from dlkit.core.config import opt, shared
from dlkit.core.errors import ConfigError

Method = Literal["lora", "last-block", "linear", "full"]


@dataclass
class VitConfig(ClassifierConfig):
    data: str = opt("builtin:digits", "Images: builtin:digits, an ImageFolder (CLASS/IMAGE, or train/ with "
                    "optional validation/ and test/ of CLASS/IMAGE), or a Hub dataset id (food101, cifar10).")
    model: str = opt("builtin:tiny-vit", "ViT/DeiT: builtin:tiny-vit, builtin:tiny-deit, a save_pretrained folder "
                     "or a Hub id (google/vit-base-patch16-224-in21k).")
    method: Method = opt("lora", "lora: LoRA on --target-modules + the classifier; last-block: the last encoder "
                         "block + the classifier; linear: the classifier only; full: everything.")
    epochs: int = shared("epochs", 3)
    batch_size: int = opt(32, "Images per micro-batch per process.")
    lr: float = opt(5e-3, "Peak learning rate (LoRA and new heads like ~1e-3..1e-2; full fine-tuning of a "
                    "pretrained model ~5e-5).")
    warmup: float = shared("warmup", 0.1)
    lora_r: int = opt(8, "LoRA rank.")
    lora_alpha: int = opt(16, "LoRA scale numerator (the update is scaled by alpha / r).")
    lora_dropout: float = opt(0.1, "Dropout on the LoRA input.")
    target_modules: str = opt("auto", "Comma-separated Linear names LoRA adapts; auto = the attention query and "
                              "value projections (q_proj,v_proj or query,value).")
    augment: bool = opt(False, "Light training augmentation: random resized crops (scale 0.8-1) and colour jitter.")
    image_size: int | None = opt(None, "Resize images to this side; default: the image processor's size. Other "
                                 "sizes interpolate the position embeddings.")
    image_col: str | None = opt(None, "Hub datasets: the image column (default: the first Image feature).")
    label_col: str | None = opt(None, "Hub datasets: the label column (default: the first ClassLabel feature).")

    def validate(self) -> None:
        super().validate()
        if self.lora_r <= 0:
            raise ConfigError(f"--lora-r must be > 0 (got {self.lora_r})")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"--lora-dropout must be in [0, 1) (got {self.lora_dropout})")
        if self.image_size is not None and self.image_size <= 0:
            raise ConfigError(f"--image-size must be > 0 (got {self.image_size})")
        if not [m for m in self.target_modules.split(",") if m.strip()]:
            raise ConfigError("--target-modules is empty; pass auto or names such as q_proj,v_proj")
