"""Transformer blocks (pre- and post-norm) and a decoder-only language model built from them."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlkit.nn.attention import MultiHeadAttention
from dlkit.nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class FeedForward(nn.Module):
    """Position-wise MLP: the per-token computation between attention layers."""

    def __init__(self, dim: int, ff_dim: int, dropout: float = 0.0, activation: str = "gelu") -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}.")
        self.fc1 = nn.Linear(dim, ff_dim)
        self.act = _ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(ff_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))  # (B, T, C) -> (B, T, F) -> (B, T, C)


class EncoderBlock(nn.Module):
    """Self-attention + feed-forward with residuals; pre-norm (norm_first) trains stably without warmup."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ff_dim: int,
        dropout: float = 0.0,
        norm_first: bool = True,
        activation: str = "gelu",
        attention: Literal["scratch", "sdpa"] = "scratch",
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(dim, num_heads, dropout=dropout, implementation=attention)
        self.ff = FeedForward(dim, ff_dim, dropout, activation)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def _self_attention(
        self, x: Tensor, key_padding_mask: Tensor | None, attn_mask: Tensor | None, causal: bool
    ) -> Tensor:
        return self.drop(self.attn(x, x, x, key_padding_mask, attn_mask, causal)[0])

    def forward(
        self, x: Tensor, key_padding_mask: Tensor | None = None, attn_mask: Tensor | None = None, causal: bool = False
    ) -> Tensor:
        """x (B, T, C) -> (B, T, C); masks are bool with True = masked out."""
        if self.norm_first:
            x = x + self._self_attention(self.norm1(x), key_padding_mask, attn_mask, causal)
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + self._self_attention(x, key_padding_mask, attn_mask, causal))
        return self.norm2(x + self.ff(x))

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerEncoderLayer) -> None:
        """Copy the weights of a torch.nn.TransformerEncoderLayer (norm_first and activation must match)."""
        self.attn.load_from_torch(layer.self_attn)
        self.ff.fc1.load_state_dict(layer.linear1.state_dict())
        self.ff.fc2.load_state_dict(layer.linear2.state_dict())
        self.norm1.load_state_dict(layer.norm1.state_dict())
        self.norm2.load_state_dict(layer.norm2.state_dict())


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention over encoder memory, then feed-forward (seq2seq decoder)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ff_dim: int,
        dropout: float = 0.0,
        norm_first: bool = True,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(dim, num_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(dim, num_heads, dropout=dropout)
        self.ff = FeedForward(dim, ff_dim, dropout, activation)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def _self_attention(self, x: Tensor, tgt_key_padding_mask: Tensor | None, causal: bool) -> Tensor:
        return self.drop(self.self_attn(x, x, x, tgt_key_padding_mask, causal=causal)[0])

    def _cross_attention(self, x: Tensor, memory: Tensor, memory_key_padding_mask: Tensor | None) -> Tensor:
        return self.drop(self.cross_attn(x, memory, memory, memory_key_padding_mask)[0])

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        causal: bool = True,
    ) -> Tensor:
        """x (B, T, C), memory (B, S, C) -> (B, T, C); padding masks (B, T) / (B, S) bool, True = padding."""
        if self.norm_first:
            x = x + self._self_attention(self.norm1(x), tgt_key_padding_mask, causal)
            x = x + self._cross_attention(self.norm2(x), memory, memory_key_padding_mask)
            return x + self.ff(self.norm3(x))
        x = self.norm1(x + self._self_attention(x, tgt_key_padding_mask, causal))
        x = self.norm2(x + self._cross_attention(x, memory, memory_key_padding_mask))
        return self.norm3(x + self.ff(x))

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerDecoderLayer) -> None:
        """Copy the weights of a torch.nn.TransformerDecoderLayer (norm_first and activation must match)."""
        self.self_attn.load_from_torch(layer.self_attn)
        self.cross_attn.load_from_torch(layer.multihead_attn)
        self.ff.fc1.load_state_dict(layer.linear1.state_dict())
        self.ff.fc2.load_state_dict(layer.linear2.state_dict())
        for ours, theirs in ((self.norm1, layer.norm1), (self.norm2, layer.norm2), (self.norm3, layer.norm3)):
            ours.load_state_dict(theirs.state_dict())


class DecoderOnlyLM(nn.Module):
    """A GPT: token + position embeddings, pre-norm causal self-attention blocks, final norm, tied LM head.

    attention: "scratch" (dlkit.nn's formula, the default) or "sdpa" (torch's fused kernel, same numbers).
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        num_layers: int,
        num_heads: int,
        block_size: int,
        dropout: float = 0.0,
        positional: Literal["sinusoidal", "learned"] = "learned",
        tie_weights: bool = True,
        attention: Literal["scratch", "sdpa"] = "scratch",
    ) -> None:
        super().__init__()
        if positional == "sinusoidal":
            self.pos: nn.Module = SinusoidalPositionalEncoding(dim, block_size)
        elif positional == "learned":
            self.pos = LearnedPositionalEmbedding(block_size, dim)
        else:
            raise ValueError(f"positional must be 'sinusoidal' or 'learned', got {positional!r}.")
        # Vaswani et al. scale token embeddings by sqrt(d) so fixed unit-amplitude sinusoids do not drown them;
        # learned positions train at the token scale and need no factor (GPT-2).
        self.embed_scale = math.sqrt(dim) if positional == "sinusoidal" else 1.0
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.drop = nn.Dropout(dropout)
        # An encoder block run with causal=True is exactly a GPT block: no cross-attention.
        self.blocks = nn.ModuleList(
            EncoderBlock(dim, num_heads, 4 * dim, dropout, norm_first=True, attention=attention)
            for _ in range(num_layers)
        )
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        self.apply(self._init_weights)
        if tie_weights:
            self.lm_head.weight = self.tok_emb.weight  # one (V, C) matrix embeds and un-embeds (Press & Wolf)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """GPT-2 init: small normal weights keep early logits near uniform."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) token ids -> (logits (B, T, V), mean cross-entropy vs targets (B, T) or None).

        Targets equal to -100 (F.cross_entropy's ignore_index) are left out of the loss, e.g. padding.
        """
        if idx.size(1) > self.block_size:
            raise ValueError(f"Sequence length {idx.size(1)} exceeds block_size {self.block_size}.")
        x = self.drop(self.pos(self.tok_emb(idx) * self.embed_scale))  # (B, T, C)
        for block in self.blocks:
            x = block(x, causal=True)  # (B, T, C)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # (B*T, V) vs (B*T,)

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample max_new_tokens continuations of idx (B, T), feeding back at most block_size tokens."""
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.block_size :])
            logits = logits[:, -1, :] / temperature  # (B, V)
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]  # (B, 1)
                logits = logits.masked_fill(logits < kth, float("-inf"))
            next_id = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)  # (B, 1)
            idx = torch.cat((idx, next_id), dim=1)  # (B, T + 1)
        return idx
