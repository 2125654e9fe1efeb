"""Position information for attention, which is otherwise permutation-equivariant.

Sinusoidal: e(t) = [sin(t/f_1), cos(t/f_1), ..., sin(t/f_{d/2}), cos(t/f_{d/2})] with f_m = 10000^(2m/d),
m = 1..d/2 as written (Vaswani et al. index from m = 0, so their first pair is sin(t), cos(t)).
Each (sin, cos) pair rotates by a fixed angle per step, so e(t + k) = T(k) e(t) with T(k) independent of t.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _inverse_frequencies(dim: int) -> Tensor:
    """1 / f_m for m = 1..dim/2, in float64 so long tables keep full precision before the final cast."""
    if dim <= 0 or dim % 2:
        raise ValueError(f"Sinusoidal encodings pair sin with cos, so dim must be positive and even: {dim}.")
    m = torch.arange(1, dim // 2 + 1, dtype=torch.float64)  # (d/2,)
    return 10000.0 ** (-2.0 * m / dim)


def sinusoidal_table(max_len: int, dim: int, dtype: torch.dtype | None = None) -> Tensor:
    """The (max_len, dim) table whose row t is e(t), sin/cos interleaved."""
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * _inverse_frequencies(dim)  # (L, d/2)
    table = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)  # (L, d/2, 2) -> (L, d)
    return table.to(dtype or torch.get_default_dtype())


def relative_shift_matrix(dim: int, k: int, dtype: torch.dtype | None = None) -> Tensor:
    """The fixed (dim, dim) map T(k) with e(t + k) = T(k) e(t): one 2x2 rotation by k/f_m per (sin, cos) pair.

    sin(a + b) = sin a cos b + cos a sin b and cos(a + b) = cos a cos b - sin a sin b give the block
    [[cos b, sin b], [-sin b, cos b]] with b = k / f_m.
    """
    theta = k * _inverse_frequencies(dim)  # (d/2,)
    cos, sin = theta.cos(), theta.sin()
    blocks = torch.stack((torch.stack((cos, sin), -1), torch.stack((-sin, cos), -1)), -2)  # (d/2, 2, 2)
    return torch.block_diag(*blocks).to(dtype or torch.get_default_dtype())  # (d, d)


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal positions: no parameters, and offsets are linear maps (see relative_shift_matrix)."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        # Non-persistent: it is a pure function of (dim, max_len), so checkpoints need not carry it.
        self.register_buffer("pe", sinusoidal_table(max_len, dim), persistent=False)

    def forward(self, x: Tensor | None = None) -> Tensor:
        """x (B, T, C) -> x + e(0..T-1); with no input, the whole (max_len, C) table."""
        if x is None:
            return self.pe
        if x.size(1) > self.pe.size(0):
            raise ValueError(f"Sequence length {x.size(1)} exceeds max_len {self.pe.size(0)}.")
        return x + self.pe[: x.size(1)]  # (B, T, C) + (T, C)


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position (GPT-2 style); cannot extrapolate past max_len."""

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(max_len, dim) * 0.02)  # (L, C)

    def forward(self, x: Tensor | None = None) -> Tensor:
        """x (B, T, C) -> x + p(0..T-1); with no input, the whole (max_len, C) table."""
        if x is None:
            return self.weight
        if x.size(1) > self.weight.size(0):
            raise ValueError(f"Sequence length {x.size(1)} exceeds max_len {self.weight.size(0)}.")
        return x + self.weight[: x.size(1)]  # (B, T, C) + (T, C)
