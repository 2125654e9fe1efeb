"""Settings of the adapter commands (no torch import: the CLI builds its flags from these dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dlkit.adapter.methods import METHODS, method_help
from dlkit.classify.classifier import ClassifierConfig, classifier_configs
from dlkit.core.config import REQUIRED, opt, shared
from dlkit.core.errors import ConfigError

Placement = Literal["houlsby", "pfeiffer"]


@dataclass
class AdapterConfig(ClassifierConfig):
    data: str = opt(
        "builtin:sentiment",
        "Text: builtin:sentiment, a CSV/JSONL file, a folder with train and "
        "optional validation and test CSV/JSONL files, or a Hub dataset id (imdb).",
        path="data",
    )
    model: str = opt(
        "builtin:tiny-roberta",
        "Encoder: builtin:tiny-roberta, a save_pretrained folder or a Hub id "
        "(roberta-base); RoBERTa and BERT layers are supported.",
        path="model",
    )
    method: str = opt("adapter", method_help(), choices=tuple(METHODS))
    placement: Placement = opt(
        "houlsby",
        "houlsby: an adapter after the attention output and after the "
        "feed-forward output of each layer; pfeiffer: after the feed-forward only.",
    )
    bottleneck: int = opt(
        16, "Adapter bottleneck width, below the hidden size (roberta-base: 768; 64 is usual).", min=1
    )
    layers: str = opt("all", "Layers that get adapters: all, or indices and ranges such as 0,1 or 6-11.")
    adapter_activation: Literal["relu", "gelu"] = opt("relu", "Nonlinearity inside the adapter.")
    adapter_dropout: float = opt(0.0, "Dropout on the adapter's up-projection output.", min=0, below=1)
    text_col: str = opt("text", "CSV/JSONL/Hub column holding the text.")
    label_col: str = opt("label", "CSV/JSONL/Hub column holding the label (integers or names).")
    max_length: int = opt(128, "Truncate texts to this many tokens.", min=2)
    epochs: int = shared("epochs", 5)
    batch_size: int = opt(32, "Texts per micro-batch per process.", min=1)
    lr: float = opt(
        1e-2,
        "Peak learning rate; 1e-2 suits the builtin model, for roberta-base use ~1e-4..1e-3 "
        "(adapters, head) or ~2e-5 (full).",
        above=0,
    )
    warmup: float = shared("warmup", 0.1)

    command: ClassVar[tuple[str, str]] = ("adapter", "train")

    def validate(self) -> None:
        super().validate()
        parse_layers(self.layers, None)


EvalConfig, PredictConfig = classifier_configs(
    "adapter",
    "texts",
    opt(REQUIRED, "Sentences to classify.", argument=True, example="the plot was wonderful"),
    "sentence",
)


def parse_layers(spec: str, num_layers: int | None) -> list[int] | None:
    """'all' -> every layer (None before the model is known); '0,2,5-7' -> [0, 2, 5, 6, 7], checked."""
    spec = spec.strip()
    if spec == "all":
        return list(range(num_layers)) if num_layers is not None else None
    indices: list[int] = []
    try:
        for part in spec.split(","):
            start, _, end = part.strip().partition("-")
            first, last = int(start), int(end) if end else int(start)
            if first < 0 or last < first:
                raise ValueError
            indices.extend(range(first, last + 1))
    except ValueError:
        raise ConfigError(f"--layers must be 'all' or indices and ranges such as 0,1 or 6-11 (got {spec!r})") from None
    if num_layers is not None and max(indices) >= num_layers:
        raise ConfigError(f"--layers {spec}: the model has {num_layers} layers (0-{num_layers - 1})")
    return sorted(set(indices))
