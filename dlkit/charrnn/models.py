"""Character language models: recurrent (torch RNN/GRU/LSTM or dlkit.nn's LSTM) and a GPT (dlkit.nn).

Both map ids (B, T) to (logits (B, T, V), loss), so training, evaluation and sampling treat them alike;
sampling an RNN carries its hidden state forward (one step per character), a GPT re-reads its last
`block_size` characters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlkit import nn as dnn
from dlkit.core.errors import RunError
from dlkit.core.run import atomic_write_json
from dlkit.core.weights import load_into

MODEL_CONFIG = "model_config.json"
WEIGHTS = "model.safetensors"
VOCAB = "vocab.json"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a trained model; saved next to its weights."""

    arch: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    block_size: int
    dropout: float = 0.0
    positional: Literal["sinusoidal", "learned"] = "learned"
    tie_weights: bool = True
    attention: Literal["scratch", "sdpa"] = "scratch"  # how a transformer computes attention (same weights)

    @classmethod
    def from_config(cls, cfg: Any, vocab_size: int) -> ModelSpec:
        return cls(
            cfg.arch,
            vocab_size,
            cfg.hidden_size,
            cfg.num_layers,
            cfg.num_heads,
            cfg.block_size,
            cfg.dropout,
            cfg.positional,
            cfg.tie_weights,
            cfg.attention,
        )


class CharRNN(nn.Module):
    """Embedding -> stacked recurrent layers -> linear head over the characters (tied to the embedding)."""

    RECURRENT = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

    def __init__(
        self,
        arch: str,
        vocab_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden_size)
        between = dropout if num_layers > 1 else 0.0  # torch warns about dropout on a single layer
        if arch == "lstm-scratch":
            self.rnn: nn.Module = dnn.LSTM(hidden_size, hidden_size, num_layers, dropout=between)
        else:
            self.rnn = self.RECURRENT[arch](hidden_size, hidden_size, num_layers, batch_first=True, dropout=between)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)  # N(0, 1) rows would start a tied head at huge logits
        nn.init.zeros_(self.head.bias)
        if tie_weights:
            self.head.weight = self.embed.weight  # (V, H) used to embed and to score (Press & Wolf)

    def step(self, idx: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """idx (B, T), recurrent state or None -> logits (B, T, V) and the state after the last character."""
        out, state = self.rnn(self.drop(self.embed(idx)), state)  # (B, T, H)
        return self.head(self.drop(out)), state

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        logits, _ = self.step(idx)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # (B*T, V) vs (B*T,)


def build_model(spec: ModelSpec) -> nn.Module:
    if spec.arch == "transformer":
        return dnn.DecoderOnlyLM(
            spec.vocab_size,
            spec.hidden_size,
            spec.num_layers,
            spec.num_heads,
            spec.block_size,
            spec.dropout,
            positional=spec.positional,
            tie_weights=spec.tie_weights,
            attention=spec.attention,
        )
    return CharRNN(spec.arch, spec.vocab_size, spec.hidden_size, spec.num_layers, spec.dropout, spec.tie_weights)


def save(model: nn.Module, spec: ModelSpec, vocab_chars: str, path: Path) -> None:
    """Weights as safetensors (tied tensors stored once), the spec and the vocabulary as JSON."""
    from safetensors.torch import save_model

    path.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path / WEIGHTS))
    atomic_write_json(path / MODEL_CONFIG, asdict(spec))
    atomic_write_json(path / VOCAB, {"chars": vocab_chars})


def read_spec(path: Path) -> tuple[ModelSpec, str]:
    """(spec, vocabulary characters) of a folder written by `save`."""
    if not (path / WEIGHTS).is_file():
        raise RunError(
            f"{path} holds no trained model ({WEIGHTS}); the run may not have finished: "
            f"resume it with `dlkit charrnn train --output-dir RUN --resume`"
        )
    spec = ModelSpec(**json.loads((path / MODEL_CONFIG).read_text(encoding="utf-8")))
    chars = json.loads((path / VOCAB).read_text(encoding="utf-8"))["chars"]
    return spec, chars


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    return load_into(model, path / WEIGHTS)  # restores the tie: the head's tensor was stored once


def load(path: Path) -> tuple[nn.Module, ModelSpec, str]:
    """(model in eval mode, spec, vocabulary characters) from a folder written by `save`."""
    spec, chars = read_spec(path)
    return load_weights(build_model(spec), path).eval(), spec, chars


def next_id(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> Tensor:
    """Sample one id per row of logits (B, V) -> (B, 1): temperature, then keep the top k."""
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.float().softmax(dim=-1).cpu()
    return torch.multinomial(probs, 1, generator=generator).to(logits.device)


@torch.no_grad()
def stream(
    model: nn.Module,
    prompt: list[int],
    num_chars: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Yield `num_chars` sampled ids after `prompt` (non-empty), one at a time."""
    device = next(model.parameters()).device
    idx = torch.tensor([prompt], dtype=torch.long, device=device)  # (1, P)
    if isinstance(model, CharRNN):
        logits, state = model.step(idx)
        for _ in range(num_chars):
            new = next_id(logits[:, -1], temperature, top_k, generator)  # (1, 1)
            yield int(new)
            logits, state = model.step(new, state)
        return
    block_size = model.block_size
    for _ in range(num_chars):
        logits, _ = model(idx[:, -block_size:])
        new = next_id(logits[:, -1], temperature, top_k, generator)
        yield int(new)
        idx = torch.cat((idx, new), dim=1)  # (1, P + t)
