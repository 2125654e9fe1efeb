"""Attention layers against torch's own implementations, plus the properties the formulas promise."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlkit.nn import AdditiveAttention, MultiHeadAttention, load_from_torch_mha, scaled_dot_product_attention

ATOL = 1e-5


def _padding_mask(lengths: list[int], max_len: int) -> torch.Tensor:
    return torch.arange(max_len)[None, :] >= torch.tensor(lengths)[:, None]  # (B, T) True = padding


def _reference_pair(
    embed_dim: int, num_heads: int, bias: bool = True, batch_first: bool = True
) -> tuple[nn.MultiheadAttention, MultiHeadAttention]:
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=batch_first)
    if bias:  # torch zero-initialises biases; random ones make a misplaced bias visible
        with torch.no_grad():
            ref.in_proj_bias.normal_()
            ref.out_proj.bias.normal_()
    return ref, load_from_torch_mha(ref)


@pytest.mark.parametrize(
    "case, bias, batch_first",
    [
        ("plain", True, True),
        ("padding", True, True),
        ("causal", True, True),
        ("cross", True, True),
        ("plain", False, True),
        ("padding", True, False),
    ],
)
def test_mha_matches_torch_outputs_weights_and_gradients(case: str, bias: bool, batch_first: bool) -> None:
    batch, tq, embed_dim, num_heads = 3, 5, 16, 4
    tk = 7 if case == "cross" else tq
    ref, ours = _reference_pair(embed_dim, num_heads, bias, batch_first)
    query = torch.randn(batch, tq, embed_dim)
    key = torch.randn(batch, tk, embed_dim) if case == "cross" else query.clone()
    value = torch.randn(batch, tk, embed_dim) if case == "cross" else query.clone()
    if not batch_first:
        query, key, value = (x.transpose(0, 1).contiguous() for x in (query, key, value))
    padding = _padding_mask([tk, tk - 2, tk - 3], tk) if case in ("padding", "cross") else None
    causal_mask = torch.ones(tq, tk, dtype=torch.bool).triu(1) if case == "causal" else None

    def run(module: nn.Module, **mask_kwargs: object) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        inputs = [x.clone().requires_grad_(True) for x in (query, key, value)]
        out, weights = module(*inputs, key_padding_mask=padding, need_weights=True, **mask_kwargs)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out, weights, [x.grad for x in inputs]

    out_ref, w_ref, grads_ref = run(ref, attn_mask=causal_mask)
    out, w, grads = run(ours, causal=case == "causal")
    torch.testing.assert_close(out, out_ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(w, w_ref, atol=ATOL, rtol=0)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, atol=ATOL, rtol=0)
    e = embed_dim
    for i, proj in enumerate((ours.q_proj, ours.k_proj, ours.v_proj)):
        torch.testing.assert_close(proj.weight.grad, ref.in_proj_weight.grad[i * e : (i + 1) * e], atol=ATOL, rtol=0)
        if bias:
            torch.testing.assert_close(proj.bias.grad, ref.in_proj_bias.grad[i * e : (i + 1) * e], atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.out_proj.weight.grad, ref.out_proj.weight.grad, atol=ATOL, rtol=0)
    if bias:
        torch.testing.assert_close(ours.out_proj.bias.grad, ref.out_proj.bias.grad, atol=ATOL, rtol=0)


def test_mha_per_head_attn_mask_matches_torch() -> None:
    ref, ours = _reference_pair(8, 2)
    x = torch.randn(2, 4, 8)
    mask = torch.rand(2 * 2, 4, 4) > 0.6  # (B * heads, Tq, Tk)
    mask[..., 0] = False  # every query keeps one key: torch gives NaN on fully masked rows
    out_ref, w_ref = ref(x, x, x, attn_mask=mask)
    out, w = ours(x, x, x, attn_mask=mask, need_weights=True)
    torch.testing.assert_close(out, out_ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(w, w_ref, atol=ATOL, rtol=0)


def test_causal_mha_output_only_depends_on_the_past() -> None:
    torch.manual_seed(0)
    mha, steps = MultiHeadAttention(8, 2), 6
    x = torch.randn(1, steps, 8, requires_grad=True)
    out, _ = mha(x, x, x, causal=True)
    for t in range(steps):
        (grad,) = torch.autograd.grad(out[0, t].sum(), x, retain_graph=True)
        assert torch.all(grad[0, t + 1 :] == 0), f"position {t} sees the future"
        assert torch.all(grad[0, : t + 1].abs().sum(-1) > 0), f"position {t} ignores part of its past"


def test_mha_rejects_indivisible_heads_and_mismatched_torch_module() -> None:
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="embed_dim"):
        MultiHeadAttention(8, 2).load_from_torch(nn.MultiheadAttention(8, 4))


def _torch_sdpa_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)


@pytest.mark.parametrize("case", ["plain", "causal", "bool_mask", "padding"])
def test_sdpa_matches_torch(case: str) -> None:
    q, k, v = _torch_sdpa_inputs()
    mask = None
    if case == "bool_mask":
        mask = torch.rand(2, 1, 5, 7) > 0.5  # True = masked out (ours)
        mask[..., 0] = False
    if case == "padding":
        padding = _padding_mask([7, 4], 7)
        out, _ = scaled_dot_product_attention(q, k, v, key_padding_mask=padding)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=~padding[:, None, None, :])
    else:
        out, _ = scaled_dot_product_attention(q, k, v, attn_mask=mask, causal=case == "causal")
        keep = None if mask is None else ~mask  # torch's boolean masks mean True = keep
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=case == "causal")
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)


def test_sdpa_weights_are_the_softmax_of_scaled_scores() -> None:
    q, k, v = _torch_sdpa_inputs()
    out, weights = scaled_dot_product_attention(q, k, v, causal=True)
    scores = q @ k.transpose(-2, -1) / 8**0.5
    expected = scores.masked_fill(torch.ones(5, 7, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
    torch.testing.assert_close(weights, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(out, weights @ v, atol=ATOL, rtol=0)


def test_sdpa_fully_masked_rows_give_zeros_without_nan() -> None:
    q, k, v = (x.requires_grad_(True) for x in _torch_sdpa_inputs())
    padding = _padding_mask([7, 0], 7)  # the second batch element has no keys at all
    out, weights = scaled_dot_product_attention(q, k, v, key_padding_mask=padding)
    out.sum().backward()
    assert torch.all(weights[1] == 0) and torch.all(out[1] == 0)
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(3, 5))
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


def test_sdpa_dropout_only_in_training() -> None:
    q, k, v = _torch_sdpa_inputs()
    eval_out, _ = scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=False)
    train_out, train_w = scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=True)
    torch.testing.assert_close(eval_out, scaled_dot_product_attention(q, k, v)[0])
    assert not torch.allclose(train_out, eval_out)
    torch.testing.assert_close(train_w.sum(-1), torch.ones(2, 3, 5))  # returned weights are pre-dropout


def test_additive_attention_is_a_masked_convex_combination() -> None:
    torch.manual_seed(0)
    attn = AdditiveAttention(encoder_dim=6, decoder_dim=5, attention_dim=4)
    features, hidden = torch.randn(3, 9, 6), torch.randn(3, 5)
    mask = _padding_mask([9, 5, 1], 9)
    context, alpha = attn(features, hidden, mask)
    assert context.shape == (3, 6) and alpha.shape == (3, 9)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3))
    assert torch.all(alpha[mask] == 0) and torch.all(alpha[~mask] > 0)
    torch.testing.assert_close(context, torch.einsum("bl,ble->be", alpha, features))
    torch.testing.assert_close(context[2], features[2, 0])  # one visible feature gets all the weight
    # e_i = w^T tanh(W_a a_i + W_h h), written out with the module's own weights
    energy = torch.tanh(
        features @ attn.encoder_proj.weight.T
        + attn.encoder_proj.bias
        + (hidden @ attn.decoder_proj.weight.T + attn.decoder_proj.bias)[:, None]
    )
    expected = (energy @ attn.score.weight.T).squeeze(-1).masked_fill(mask, float("-inf")).softmax(-1)
    torch.testing.assert_close(alpha, expected)


def test_additive_attention_with_keys_computed_once_is_the_same() -> None:
    torch.manual_seed(0)
    attn = AdditiveAttention(6, 5, 4)
    features, hidden = torch.randn(3, 9, 6), torch.randn(3, 5)
    keys = attn.keys(features)
    for got, expected in zip(attn(features, hidden, keys=keys), attn(features, hidden), strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_additive_attention_depends_on_the_decoder_state() -> None:
    torch.manual_seed(0)
    attn = AdditiveAttention(6, 5, 4)
    features = torch.randn(1, 9, 6)
    _, alpha_a = attn(features, torch.randn(1, 5))
    _, alpha_b = attn(features, torch.randn(1, 5))
    assert not torch.allclose(alpha_a, alpha_b)


@pytest.mark.parametrize("case", ["causal", "padding", "padding+causal", "per-head mask", "empty rows"])
def test_fused_attention_equals_the_formula_with_gradients(case: str) -> None:
    """implementation="sdpa" (torch's kernel) gives the from-scratch output and gradients, masks included."""
    torch.manual_seed(0)
    scratch = MultiHeadAttention(16, 4)
    fused = MultiHeadAttention(16, 4, implementation="sdpa")
    fused.load_state_dict(scratch.state_dict())
    x = torch.randn(3, 7, 16)
    lengths = [0, 4, 7] if case == "empty rows" else [3, 5, 7]  # a row of padding only: no key at all
    kwargs: dict = {"causal": "causal" in case}
    if "padding" in case or case == "empty rows":
        kwargs["key_padding_mask"] = _padding_mask(lengths, 7)
    if case == "per-head mask":
        kwargs["attn_mask"] = torch.rand(3 * 4, 7, 7) > 0.6
    outputs = []
    for module in (scratch, fused):
        inp = x.clone().requires_grad_()
        y, _ = module(inp, inp, inp, **kwargs)
        (y * torch.linspace(-1, 1, 16)).sum().backward()
        outputs.append((y, inp.grad, [p.grad for p in module.parameters()]))
        module.zero_grad()
    (y_ref, gx_ref, gp_ref), (y, gx, gp) = outputs
    assert torch.isfinite(y).all() and torch.isfinite(gx).all()
    torch.testing.assert_close(y, y_ref, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(gx, gx_ref, atol=ATOL, rtol=ATOL)
    for g, g_ref in zip(gp, gp_ref, strict=True):
        torch.testing.assert_close(g, g_ref, atol=ATOL, rtol=ATOL)


def test_fused_attention_returns_weights_through_the_formula() -> None:
    torch.manual_seed(0)
    fused = MultiHeadAttention(8, 2, implementation="sdpa")
    x = torch.randn(2, 5, 8)
    _, weights = fused(x, x, x, causal=True, need_weights=True)
    assert weights.shape == (2, 5, 5) and torch.allclose(weights.sum(-1), torch.ones(2, 5))
    with pytest.raises(ValueError, match="'scratch' or 'sdpa'"):
        MultiHeadAttention(8, 2, implementation="flash")


@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_packs_q_k_v_into_one_projection_with_the_same_result(bias: bool) -> None:
    """query is key is value takes one (C -> 3C) matmul; the separate projections give the same output and
    gradients (a copy of x is not the same object, so it goes through q_proj, k_proj and v_proj one by one)."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, bias=bias)
    x = torch.randn(3, 7, 16)
    results = []
    for packed in (True, False):
        inp = x.clone().requires_grad_()
        y, _ = mha(inp, inp, inp, causal=True) if packed else mha(inp, inp.clone(), inp.clone(), causal=True)
        (y * torch.linspace(-1, 1, 16)).sum().backward()
        results.append((y, inp.grad, [p.grad.clone() for p in mha.parameters()]))
        mha.zero_grad()
    (y_packed, gx_packed, gp_packed), (y_apart, gx_apart, gp_apart) = results
    torch.testing.assert_close(y_packed, y_apart, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(gx_packed, gx_apart, atol=1e-6, rtol=1e-6)
    for g_packed, g_apart in zip(gp_packed, gp_apart, strict=True):
        torch.testing.assert_close(g_packed, g_apart, atol=1e-6, rtol=1e-6)
