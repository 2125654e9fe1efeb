"""NEFTune (Jain et al., 2023, "NEFTune: Noisy Embeddings Improve Instruction Finetuning"): during training, noise
drawn from U(-1, 1) and scaled by alpha / sqrt(L * d) is added to every input embedding, d the embedding size
and L the sequence's length.

TRL and transformers take L as the padded width of the batch, so a short conversation batched with a long one
gets less noise. Here L is each sequence's own length without padding, and in a packed row each conversation's
own length (its position ids restart at 0), so the noise a conversation gets does not depend on its batch:
its expected norm is alpha / sqrt(3) in every case. Padding gets no noise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def token_lengths(mask: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T) the length of the sequence each real token belongs to, 0 at padding. `mask` (B, T) marks real
    tokens; with `position_ids` (a packed row), a sequence starts wherever the position is 0."""
    real = mask.bool()
    if position_ids is None:
        return real.sum(dim=1, keepdim=True) * real
    segment = (((position_ids == 0) & real).cumsum(dim=1) * real).long()  # (B, T) 1-based conversation index
    counts = torch.zeros(real.shape[0], real.shape[1] + 1, dtype=torch.long, device=mask.device)
    counts.scatter_add_(1, segment, real.long())  # tokens per conversation (index 0 collects padding: zeros)
    return counts.gather(1, segment) * real


def neftune_noise(embeddings: torch.Tensor, lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """(B, T, d) uniform noise for `embeddings` (B, T, d): U(-1, 1) x alpha / sqrt(L * d), L from `lengths`
    (B, T); zero where L is 0."""
    d = embeddings.shape[-1]
    scale = alpha / torch.sqrt(lengths.clamp_min(1).to(torch.float32) * d)  # (B, T)
    scale = torch.where(lengths > 0, scale, torch.zeros_like(scale))
    return torch.empty_like(embeddings).uniform_(-1.0, 1.0) * scale[..., None].to(embeddings.dtype)


class NEFTune:
    """A forward hook on a model's input embedding layer that adds NEFTune noise while that layer is in train
    mode and a batch's token lengths are set (`with neftune.lengths_of(mask, position_ids): model(...)`):
    evaluation and generation (eval mode) see the embeddings unchanged."""

    def __init__(self, alpha: float):
        self.alpha = alpha
        self.lengths: torch.Tensor | None = None

    def attach(self, embedding: nn.Module) -> Any:
        return embedding.register_forward_hook(self._add_noise)

    @contextlib.contextmanager
    def lengths_of(self, mask: torch.Tensor, position_ids: torch.Tensor | None = None) -> Iterator[None]:
        self.lengths = token_lengths(mask, position_ids)
        try:
            yield
        finally:
            self.lengths = None

    def _add_noise(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        if not module.training or self.lengths is None or not self.alpha:
            return output
        return output + neftune_noise(output, self.lengths.to(output.device), self.alpha)
