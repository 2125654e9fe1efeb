"""Causal attention in query blocks (dlkit.nn.blockwise) against one causal torch call."""

import pytest
import torch
import torch.nn.functional as F

from dlkit.nn.blockwise import BLOCK, MAX_LENGTH, MIN_LENGTH, blockwise_applies, causal_attention


def _qkv(length: int, kv_heads: int, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    q = torch.randn(2, length, 4, 16, dtype=dtype).transpose(1, 2).requires_grad_()  # transformers' layout
    k, v = (torch.randn(2, length, kv_heads, 16, dtype=dtype).transpose(1, 2).requires_grad_() for _ in range(2))
    return q, k, v


def _value_and_grads(attention, q, k, v, grad):
    out = attention(q, k, v)
    return (out, *torch.autograd.grad(out, (q, k, v), grad))


@pytest.mark.parametrize("length", [MIN_LENGTH, 3 * BLOCK + 7 + MIN_LENGTH, MAX_LENGTH])  # a last block cut short
@pytest.mark.parametrize("kv_heads", [4, 2])  # grouped queries: two query heads share a key/value head
def test_blocks_give_the_causal_kernels_values_and_gradients(length, kv_heads):
    q, k, v = _qkv(length, kv_heads)
    assert blockwise_applies(q, k)

    def reference(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=kv_heads != 4)

    grad = torch.randn(2, 4, length, 16)
    ours, theirs = _value_and_grads(causal_attention, q, k, v, grad), _value_and_grads(reference, q, k, v, grad)
    for name, a, b in zip(("output", "dq", "dk", "dv"), ours, theirs, strict=True):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
    assert ours[0].transpose(1, 2).is_contiguous()  # back to (B, L, H, D) without a copy


def test_a_future_token_changes_nothing_before_it():
    """Causality itself, not only agreement with torch: editing the keys and values of the last position
    moves only the last output."""
    q, k, v = (t.detach() for t in _qkv(300, 2))
    k2, v2 = k.clone(), v.clone()
    k2[:, :, -1] += 5.0
    v2[:, :, -1] -= 5.0
    before, after = causal_attention(q, k, v), causal_attention(q, k2, v2)
    torch.testing.assert_close(before[:, :, :-1], after[:, :, :-1], rtol=0, atol=1e-6)
    assert (before[:, :, -1] - after[:, :, -1]).abs().max() > 0.1


def test_bfloat16_blocks_match_the_bfloat16_kernel():
    q, k, v = _qkv(384, 2, torch.bfloat16)
    grad = torch.randn(2, 4, 384, 16, dtype=torch.bfloat16)
    reference = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # noqa: E731
    for a, b in zip(
        _value_and_grads(causal_attention, q, k, v, grad), _value_and_grads(reference, q, k, v, grad), strict=True
    ):
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("length", [MIN_LENGTH - 1, MAX_LENGTH + 1])
def test_other_lengths_take_torchs_own_call(length):
    """Outside the lengths where the blocks measured faster (benchmarks/attention_blocks.py) nothing changes."""
    q, k, v = _qkv(length, 2)
    assert not blockwise_applies(q, k)
    torch.testing.assert_close(
        causal_attention(q, k, v),
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
        rtol=0,
        atol=0,
    )


def test_autocast_keeps_torchs_own_call():
    """Under autocast torch chooses sdpa's precision; the blocks would run in the inputs' float32."""
    q, k, _ = _qkv(MIN_LENGTH, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not blockwise_applies(q, k)
    assert blockwise_applies(q, k)
