"""Sinusoidal encodings against the formula and the relative-shift identity; learned positions."""

import math

import pytest
import torch

from dlkit.nn import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, relative_shift_matrix
from dlkit.nn.positional import sinusoidal_table


def test_sinusoidal_values_follow_the_formula() -> None:
    dim = 8
    table = SinusoidalPositionalEncoding(dim, max_len=100)()
    assert table.shape == (100, dim)
    for t in (0, 1, 7, 42, 99):
        for m in range(1, dim // 2 + 1):  # f_m = 10000^(2m/d), m = 1..d/2, pairs interleaved
            f = 10000 ** (2 * m / dim)
            assert table[t, 2 * (m - 1)].item() == pytest.approx(math.sin(t / f), abs=1e-6)
            assert table[t, 2 * (m - 1) + 1].item() == pytest.approx(math.cos(t / f), abs=1e-6)


@pytest.mark.parametrize("k", [0, 1, 3, 17, 60])
def test_relative_shift_matrix_maps_e_t_to_e_t_plus_k(k: int) -> None:
    dim, length = 16, 200
    table = sinusoidal_table(length, dim, torch.float64)  # (L, d)
    shift = relative_shift_matrix(dim, k, torch.float64)  # (d, d)
    shifted = table[: length - k] @ shift.T  # row t is T(k) e(t)
    torch.testing.assert_close(shifted, table[k:], atol=1e-10, rtol=0)
    # the float32 module table satisfies it to single precision as well
    pe = SinusoidalPositionalEncoding(dim, length)()
    torch.testing.assert_close(pe[: length - k] @ relative_shift_matrix(dim, k).T, pe[k:], atol=1e-5, rtol=0)


def test_relative_shift_matrix_is_a_rotation_group() -> None:
    a, b = relative_shift_matrix(6, 4, torch.float64), relative_shift_matrix(6, 9, torch.float64)
    torch.testing.assert_close(a @ b, relative_shift_matrix(6, 13, torch.float64))
    torch.testing.assert_close(a @ a.T, torch.eye(6, dtype=torch.float64))
    assert torch.count_nonzero(a) == 3 * 4  # block-diagonal 2x2 blocks only


def test_sinusoidal_module_adds_a_non_persistent_buffer() -> None:
    enc = SinusoidalPositionalEncoding(4, max_len=10)
    assert "pe" in dict(enc.named_buffers()) and enc.state_dict() == {}
    assert list(enc.parameters()) == []
    x = torch.randn(2, 6, 4)
    torch.testing.assert_close(enc(x), x + sinusoidal_table(6, 4))
    with pytest.raises(ValueError, match="max_len"):
        enc(torch.randn(1, 11, 4))


def test_sinusoidal_rejects_odd_dim() -> None:
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositionalEncoding(5, 10)


def test_learned_positional_embedding_adds_trainable_rows() -> None:
    emb = LearnedPositionalEmbedding(max_len=10, dim=4)
    x = torch.randn(2, 6, 4)
    out = emb(x)
    torch.testing.assert_close(out, x + emb.weight[:6])
    out.sum().backward()
    assert torch.all(emb.weight.grad[:6] == 2) and torch.all(emb.weight.grad[6:] == 0)
    assert emb().shape == (10, 4)
    with pytest.raises(ValueError, match="max_len"):
        emb(torch.randn(1, 11, 4))
