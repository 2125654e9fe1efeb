"""Captioning architectures by name: ONE dict, name -> Arch. A new architecture is one entry.

No torch here: `--arch`'s help, its choices and what the other commands ask of a run's architecture are read
from ARCHS, and a builder imports its decoder when it runs. A builder takes the run's ModelSpec, the encoder's
feature size C and its number of grid cells L, and returns a decoder with the three calls greedy and beam
search use (dlkit.caption.models: `forward`, `init_state`, `step`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from dlkit.caption.models import ModelSpec

DecoderBuilder = Callable[["ModelSpec", int, int], "nn.Module"]  # (spec, feature_dim C, grid cells L) -> decoder


@dataclass(frozen=True)
class Arch:
    name: str
    help: str
    decoder: DecoderBuilder | None  # None: a whole transformers VisionEncoderDecoderModel (dlkit.caption.hf)
    attention: bool = False  # one attention map per word: --alpha-c, --heatmap
    check: Callable[[Any], str | None] | None = None  # a CaptionConfig -> what is wrong with it for this arch


def _lstm(spec: ModelSpec, feature_dim: int, grid: int) -> nn.Module:
    from dlkit.caption.models import LSTMDecoder

    return LSTMDecoder(
        vocab_size=spec.vocab_size,
        feature_dim=feature_dim,
        embed_dim=spec.embed_dim,
        hidden_dim=spec.hidden_dim,
        dropout=spec.dropout,
    )


def _attention(spec: ModelSpec, feature_dim: int, grid: int) -> nn.Module:
    from dlkit.caption.models import AttentionDecoder

    return AttentionDecoder(
        vocab_size=spec.vocab_size,
        feature_dim=feature_dim,
        embed_dim=spec.embed_dim,
        hidden_dim=spec.hidden_dim,
        attention_dim=spec.attention_dim,
        dropout=spec.dropout,
    )


def _transformer(spec: ModelSpec, feature_dim: int, grid: int) -> nn.Module:
    from dlkit.caption.models import TransformerDecoder

    return TransformerDecoder(
        vocab_size=spec.vocab_size,
        feature_dim=feature_dim,
        dim=spec.embed_dim,
        ff_dim=spec.hidden_dim,
        num_layers=spec.num_layers,
        num_heads=spec.num_heads,
        max_len=spec.max_len,
        max_grid=grid,
        dropout=spec.dropout,
    )


def _heads_divide_width(cfg: Any) -> str | None:
    if cfg.embed_dim % cfg.num_heads:
        return f"--embed-dim {cfg.embed_dim} must be divisible by --num-heads {cfg.num_heads}"
    return None


ARCHS: dict[str, Arch] = {
    a.name: a
    for a in [
        Arch("lstm", "CNN-LSTM (Show and Tell)", _lstm),
        Arch("attention", "Show, Attend and Tell", _attention, attention=True),
        Arch("transformer", "CNN + transformer decoder", _transformer, check=_heads_divide_width),
        Arch("vit-gpt2", "transformers VisionEncoderDecoder", None),
    ]
}


def arch_help() -> str:
    """'lstm (CNN-LSTM (Show and Tell)), attention (...), ... or vit-gpt2 (...)': --arch's help."""
    named = [f"{a.name} ({a.help})" for a in ARCHS.values()]
    return ", ".join(named[:-1]) + " or " + named[-1] if len(named) > 1 else named[0]
