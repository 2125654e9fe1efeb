"""Settings of `dlkit caption prepare` and `dlkit caption train` (no torch here: the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dlkit.core.config import TrainConfig, opt, shared
from dlkit.core.errors import ConfigError

Arch = Literal["lstm", "attention", "transformer", "vit-gpt2"]
Encoder = Literal["efficientnet_b0", "tiny-cnn"]
ENCODER_IMAGE_SIZE = {"efficientnet_b0": 224, "tiny-cnn": 32}


def _check_text(min_freq: int, max_len: int | None) -> None:
    if min_freq < 1:
        raise ConfigError(f"--min-freq must be >= 1 (got {min_freq})")
    if max_len is not None and max_len < 2:
        raise ConfigError(f"--max-len must be >= 2, room for <sos> and <eos> (got {max_len})")


@dataclass
class PrepareConfig:
    data: str = opt("builtin:shapes", "Captions: a Flickr8k/COCO folder, a Hub dataset id, or builtin:shapes.")
    output_dir: str | None = opt(None, "Where to write vocab.json, split files and plots. "
                                       "Default: data/caption/<dataset name>.")
    min_freq: int = opt(1, "Keep words seen at least this many times in the training split; others become <unk>.")
    max_len: int | None = opt(None, "Caption length in tokens incl. <sos>/<eos>; default: the p95 length + 2.")
    seed: int = opt(0, "Seed of the 80/10/10 split by image (kept as given when the dataset names all three).")
    strict: bool = opt(False, "Fail on the first missing image, empty caption or undecodable image.")
    overwrite: bool = opt(False, "Replace an existing output folder.")

    def validate(self) -> None:
        _check_text(self.min_freq, self.max_len)


@dataclass
class CaptionConfig(TrainConfig):
    data: str = opt("builtin:shapes", "Captions: a Flickr8k/COCO folder, a folder written by `caption prepare`, "
                                      "a Hub dataset id, or builtin:shapes.")
    model: str = opt("builtin:tiny-vit-gpt2", "--arch vit-gpt2 only: a VisionEncoderDecoder folder or Hub id, or "
                                             "ENCODER+DECODER, two Hub ids joined by + (see the example above).")
    arch: Arch = opt("attention", "lstm (CNN-LSTM), attention (Show, Attend and Tell), transformer (CNN + "
                                  "transformer decoder) or vit-gpt2 (transformers VisionEncoderDecoder).")
    encoder: Encoder = opt("tiny-cnn", "CNN encoder of --arch lstm, attention or transformer: efficientnet_b0 "
                                       "(torchvision) or tiny-cnn (4 conv layers, for CPU demos and tests).")
    pretrained_encoder: bool | None = opt(None, "Start efficientnet_b0 from its ImageNet weights (downloaded by "
                                                "torchvision). Default: yes, or random weights with a warning when "
                                                "they are neither in the torch cache nor downloadable; "
                                                "--no-pretrained-encoder for random weights. A pretrained encoder "
                                                "is frozen; tiny-cnn has no pretrained weights.")
    finetune_encoder: bool = opt(False, "Also train the last block of a frozen encoder.")
    freeze_encoder: bool = opt(False, "Freeze a randomly initialised encoder too (otherwise it trains with the "
                                      "decoder).")
    image_size: int | None = opt(None, "Input resolution; default: the encoder's (224 efficientnet_b0, 32 tiny-cnn).")
    cache_features: bool = opt(False, "Run the frozen encoder once over all images and train on the stored features.")
    embed_dim: int = opt(128, "Word embedding size (and the transformer's model width).")
    hidden_dim: int = opt(256, "LSTM hidden size (lstm, attention); feed-forward size (transformer).")
    attention_dim: int = opt(128, "Additive attention's hidden size (attention).")
    num_layers: int = opt(2, "Transformer decoder blocks.")
    num_heads: int = opt(4, "Attention heads per transformer block.")
    dropout: float = opt(0.1, "Dropout in the decoder.")
    alpha_c: float = opt(1.0, "Weight of the doubly stochastic attention penalty, the mean over cells i of "
                              "(1 - sum_t alpha_ti)^2 (attention).")
    min_freq: int = opt(1, "Keep words seen at least this many times in the training split; others become <unk>.")
    max_len: int | None = opt(None, "Caption length in tokens incl. <sos>/<eos>; default: the p95 length + 2.")
    beam_size: int = opt(1, "Beam width for the validation BLEU and samples (1 = greedy).")
    strict: bool = opt(False, "Fail on the first missing image, empty caption or undecodable image.")
    epochs: int | None = opt(None, "Passes over the training set (one pass = every caption of every image once). "
                                   "Default: 10, or 1 on builtin: data (about a minute on a laptop CPU).")
    batch_size: int = opt(32, "Image-caption pairs per micro-batch per process.")
    lr: float = shared("lr", 1e-3)

    def validate(self) -> None:
        if self.epochs is None:
            self.epochs = 1 if self.data.startswith("builtin:") else 10
        super().validate()
        _check_text(self.min_freq, self.max_len)
        if self.image_size is not None and self.image_size < 16:
            raise ConfigError(f"--image-size must be >= 16 (got {self.image_size})")
        for name in ("embed_dim", "hidden_dim", "attention_dim", "num_layers", "num_heads", "beam_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(self, name)})")
        if self.arch == "transformer" and self.embed_dim % self.num_heads:
            raise ConfigError(f"--embed-dim {self.embed_dim} must be divisible by --num-heads {self.num_heads}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.cache_features and self.arch == "vit-gpt2":
            raise ConfigError("--cache-features works with the CNN encoders (lstm, attention, transformer), "
                              "not --arch vit-gpt2")
        if self.cache_features and not self.encoder_frozen:
            raise ConfigError("--cache-features needs a frozen encoder: pass --pretrained-encoder or --freeze-encoder "
                              "and leave out --finetune-encoder")

    @property
    def wants_pretrained(self) -> bool:
        """--pretrained-encoder as given, else whether the encoder has ImageNet weights (not tiny-cnn)."""
        return self.pretrained_encoder if self.pretrained_encoder is not None else self.encoder != "tiny-cnn"

    @property
    def encoder_frozen(self) -> bool:
        """Whether no encoder weight trains (then features can be cached)."""
        return (self.wants_pretrained or self.freeze_encoder) and not self.finetune_encoder

    @property
    def resolved_image_size(self) -> int:
        return self.image_size or ENCODER_IMAGE_SIZE[self.encoder]
