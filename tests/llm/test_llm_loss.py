"""The training loss path (labelled positions only, chunked LM head) against the model's own loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlkit.core.config import load_config
from dlkit.llm.config import LlmConfig


@pytest.mark.parametrize("model", ["builtin:tiny-llama", "builtin:tiny-gemma2"])
@pytest.mark.parametrize("method", ["full", "lora"])
def test_causal_lm_loss_equals_the_models_own_loss_and_gradients(monkeypatch, model, method):
    """Same loss and the same gradient on every trainable weight (the tied embedding included for `full`)
    as the plain path: the model's own logits at every position (soft-capped for Gemma-2), cross-entropy
    averaged over the labelled ones. float64, so a tolerance of 1e-10 leaves no room for a wrong term.
    training_step drops the padding mask of these right-padded rows: still the same numbers."""
    from dlkit.llm.data import IGNORE, pad_batch
    from dlkit.llm.task import LlmTask, causal_lm_loss
    from dlkit.nn import losses

    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 5 * 2000)  # several chunks of 5 rows
    cfg = load_config(
        LlmConfig, None, {"model": model, "method": method, "dropout": 0.0, "limit": 20, "val_size": 2, "test_size": 2}
    )
    task = LlmTask(cfg)
    net = task.build_model().double()
    batch = pad_batch(task.splits.train.examples[:6], task.tokenizer.pad_token_id)
    assert (batch["attention_mask"] == 0).any()  # rows of different lengths: padding to get right
    results = []
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def plain() -> torch.Tensor:
        logits = net(**inputs).logits[:, :-1]  # (B, T - 1, V): position t predicts token t + 1
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=IGNORE)

    for loss_of in (plain, lambda: causal_lm_loss(net, batch), lambda: task.training_step(net, dict(batch))[0]):
        net.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}))
    (ref_loss, ref_grads), *ours = results
    for loss, grads in ours:  # causal_lm_loss, then training_step (which drops the padding mask)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-10)
        assert grads.keys() == ref_grads.keys() and grads
        for name, grad in grads.items():
            torch.testing.assert_close(grad, ref_grads[name], rtol=1e-9, atol=1e-10, msg=name)
