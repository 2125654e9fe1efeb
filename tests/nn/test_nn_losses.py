"""The chunked linear cross-entropy against torch's cross-entropy on the full logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlkit.nn import losses


def reference(hidden, weight, targets, softcap):
    logits = hidden @ weight.t()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, reduction="sum")


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("train_weight", [True, False])
def test_loss_and_gradients_equal_full_logits(monkeypatch, softcap, train_weight):
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 7 * 50)  # 7 rows per chunk: 3 chunks, the last one short
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(20, 8, generator=gen, dtype=torch.float64) * 2
    weight = torch.randn(50, 8, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 50, (20,), generator=gen)
    grads = []
    for fn in (reference, losses.linear_cross_entropy):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_(train_weight)
        loss = fn(h, w, targets, softcap)
        (loss * 0.5).backward()  # a scaled upstream gradient reaches both inputs
        grads.append((loss.detach(), h.grad, w.grad))
    (ref_loss, ref_h, ref_w), (loss, grad_h, grad_w) = grads
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_h, ref_h, rtol=1e-12, atol=1e-12)
    if train_weight:
        torch.testing.assert_close(grad_w, ref_w, rtol=1e-12, atol=1e-12)
    else:
        assert grad_w is None


def test_float32_and_no_grad_match():
    gen = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(33, 16, generator=gen), torch.randn(300, 16, generator=gen)
    targets = torch.randint(0, 300, (33,), generator=gen)
    with torch.no_grad():
        loss = losses.linear_cross_entropy(hidden.requires_grad_(), weight, targets, 30.0)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, reference(hidden.detach(), weight, targets, 30.0), rtol=1e-5, atol=1e-5)
