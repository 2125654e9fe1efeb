"""Attention from the formula: scaled dot-product, multi-head, and additive (Bahdanau) attention.

Mask convention everywhere in this package: a boolean mask is True where a position is masked out,
the same as torch.nn.MultiheadAttention's key_padding_mask (the opposite of F.scaled_dot_product_attention).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Softmax over the last dim ignoring masked (True) entries; a row with every entry masked gives zeros.

    Filling with -inf alone would give NaN for such rows (0/0), so they are softmaxed unmasked and then
    zeroed: the forward pass and the gradients stay finite.
    """
    if mask is None:
        return scores.softmax(dim=-1)
    empty = mask.all(dim=-1, keepdim=True)  # rows with nothing to attend to
    scores = scores.masked_fill(mask, float("-inf")).masked_fill(empty, 0.0)
    return scores.softmax(dim=-1).masked_fill(empty, 0.0)


def combined_mask(
    q: Tensor, k: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None, causal: bool
) -> Tensor | None:
    """The three ways to mask attention as one boolean mask broadcastable to (..., Tq, Tk), True = masked;
    None when nothing is masked. Argument meanings as in `scaled_dot_product_attention`."""
    tq, tk = q.size(-2), k.size(-2)
    masks = [] if attn_mask is None else [attn_mask]
    if key_padding_mask is not None:
        masks.append(key_padding_mask.view(key_padding_mask.size(0), *[1] * (q.dim() - 2), tk))  # (B, 1, ..., Tk)
    if causal:
        masks.append(torch.ones(tq, tk, dtype=torch.bool, device=q.device).triu(1))  # (Tq, Tk)
    return functools.reduce(torch.logical_or, masks) if masks else None


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    key_padding_mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    training: bool = False,
) -> tuple[Tensor, Tensor]:
    """softmax(Q K^T / sqrt(d) + mask) V, returning (output, attention weights).

    q: (..., Tq, d), k: (..., Tk, d), v: (..., Tk, dv); leading dims broadcast, the first one is the batch.
    attn_mask: bool, broadcastable to (..., Tq, Tk), True = query may not attend to that key.
    key_padding_mask: bool (B, Tk), True = that key is padding.
    causal: query i may only attend to keys j <= i (top-left aligned when Tq != Tk, like torch).
    A query row whose keys are all masked gets all-zero weights, hence an all-zero output row.
    The returned weights are those before dropout (dropout only acts on the weights used for the output).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., Tq, Tk)
    mask = combined_mask(q, k, attn_mask, key_padding_mask, causal)
    weights = masked_softmax(scores, mask)  # (..., Tq, Tk)
    dropped = F.dropout(weights, p=dropout_p, training=training)
    return dropped @ v, weights  # (..., Tq, dv), (..., Tq, Tk)


def fused_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    key_padding_mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    training: bool = False,
) -> Tensor:
    """`scaled_dot_product_attention` above through torch's fused kernel (F.scaled_dot_product_attention):
    the same output, masks and empty-row rule, without materialising the weights (none are returned).

    torch's mask means the opposite (True = may attend), and a query with no key left would give NaN there,
    so such rows attend unmasked and are zeroed afterwards, as masked_softmax does.
    """
    dropout_p = dropout_p if training else 0.0
    if attn_mask is None and key_padding_mask is None:  # causal or nothing: torch's kernel needs no mask tensor
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
    mask = combined_mask(q, k, attn_mask, key_padding_mask, causal)
    assert mask is not None  # a mask was given
    empty = mask.all(dim=-1, keepdim=True)  # (..., Tq, 1) queries with nothing to attend to
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=~(mask & ~empty), dropout_p=dropout_p)
    return out.masked_fill(empty, 0.0)  # (..., Tq, dv)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections; numerically nn.MultiheadAttention.

    implementation: "scratch" computes the formula above (the default, and always when weights are asked for);
    "sdpa" calls torch's fused kernel for the same result, faster and without the (T x T) weights in memory.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = True,
        implementation: Literal["scratch", "sdpa"] = "scratch",
    ) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}).")
        if implementation not in ("scratch", "sdpa"):
            raise ValueError(f"implementation must be 'scratch' or 'sdpa', got {implementation!r}.")
        self.implementation = implementation
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def _packed_projection(self, x: Tensor) -> Tensor:
        """q_proj, k_proj and v_proj of the same x in one matmul: (B, T, C) -> (B, T, 3C)."""
        projections = (self.q_proj, self.k_proj, self.v_proj)
        weight = torch.cat([p.weight for p in projections])  # (3C, C)
        bias = torch.cat([p.bias for p in projections]) if self.q_proj.bias is not None else None
        return F.linear(x, weight, bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, -1).transpose(1, 2)  # (B, T, C) -> (B, nh, T, hd)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Returns (output like query, weights averaged over heads (B, Tq, Tk) or None).

        attn_mask is bool (Tq, Tk) or (B * num_heads, Tq, Tk) as in nn.MultiheadAttention, True = masked.
        """
        self_attention = query is key and key is value  # one (C -> 3C) matmul then, as torch's MHA packs it
        if not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))  # (T, B, C) -> (B, T, C)
        batch, tq, channels = query.shape
        if self_attention:
            q, k, v = (self._split_heads(t) for t in self._packed_projection(query).split(channels, dim=-1))
        else:
            q = self._split_heads(self.q_proj(query))  # (B, nh, Tq, hd)
            k = self._split_heads(self.k_proj(key))  # (B, nh, Tk, hd)
            v = self._split_heads(self.v_proj(value))  # (B, nh, Tk, hd)
        if attn_mask is not None and attn_mask.dim() == 3:
            attn_mask = attn_mask.view(batch, self.num_heads, tq, -1)  # (B * nh, Tq, Tk) -> (B, nh, Tq, Tk)
        if self.implementation == "sdpa" and not need_weights:
            y, weights = (
                fused_attention(q, k, v, attn_mask, key_padding_mask, causal, self.dropout, self.training),
                None,
            )
        else:
            y, weights = scaled_dot_product_attention(
                q, k, v, attn_mask, key_padding_mask, causal, self.dropout, self.training
            )
        y = y.transpose(1, 2).reshape(batch, tq, channels)  # (B, nh, Tq, hd) -> (B, Tq, C)
        y = self.out_proj(y)
        if not self.batch_first:
            y = y.transpose(0, 1)  # (B, Tq, C) -> (Tq, B, C)
        return y, (weights.mean(dim=1) if need_weights and weights is not None else None)

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> None:
        """Copy a torch.nn.MultiheadAttention's weights; its packed in_proj_weight splits into q, k, v."""
        if (mha.embed_dim, mha.num_heads) != (self.embed_dim, self.num_heads) or not mha._qkv_same_embed_dim:
            raise ValueError("torch MultiheadAttention must match embed_dim and num_heads, with kdim = vdim.")
        projections = (self.q_proj, self.k_proj, self.v_proj)
        for proj, weight in zip(projections, mha.in_proj_weight.chunk(3), strict=True):
            proj.weight.copy_(weight)
        if mha.in_proj_bias is not None:
            for proj, bias in zip(projections, mha.in_proj_bias.chunk(3), strict=True):
                proj.bias.copy_(bias)
        self.out_proj.load_state_dict(mha.out_proj.state_dict())


def load_from_torch_mha(mha: nn.MultiheadAttention) -> MultiHeadAttention:
    """Build a MultiHeadAttention holding a copy of a torch.nn.MultiheadAttention's weights."""
    ours = MultiHeadAttention(
        mha.embed_dim, mha.num_heads, mha.dropout, bias=mha.in_proj_bias is not None, batch_first=mha.batch_first
    )
    ours.load_from_torch(mha)
    return ours.to(mha.in_proj_weight.device, mha.in_proj_weight.dtype)


class AdditiveAttention(nn.Module):
    """Bahdanau / Show-Attend-Tell soft attention: an MLP scores each encoder feature against the decoder.

    e_i = w^T tanh(W_a a_i + W_h h), alpha = softmax(e), z = sum_i alpha_i a_i.
    """

    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.encoder_proj = nn.Linear(encoder_dim, attention_dim)  # W_a
        self.decoder_proj = nn.Linear(decoder_dim, attention_dim)  # W_h
        self.score = nn.Linear(attention_dim, 1, bias=False)  # w (a bias would cancel in the softmax)

    def keys(self, features: Tensor) -> Tensor:
        """W_a a_i for every feature (B, L, A): the same at every decoding step, so a decoder computes it once."""
        return self.encoder_proj(features)

    def forward(
        self, features: Tensor, hidden: Tensor, mask: Tensor | None = None, keys: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """features (B, L, E), hidden (B, H), mask (B, L) True = ignore, keys (B, L, A) = `self.keys(features)` when
        already computed -> (context (B, E), alpha (B, L))."""
        keys = self.keys(features) if keys is None else keys
        energy = torch.tanh(keys + self.decoder_proj(hidden).unsqueeze(1))  # (B, L, A)
        alpha = masked_softmax(self.score(energy).squeeze(-1), mask)  # (B, L)
        context = (alpha.unsqueeze(-1) * features).sum(dim=1)  # (B, L, E) -> (B, E)
        return context, alpha
