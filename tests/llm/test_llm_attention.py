"""Base models load with dlkit's sdpa (causal self-attention in query blocks on a CPU): same numbers as
transformers' sdpa, and nothing of it reaches a saved model."""

from __future__ import annotations

import torch

from dlkit.llm.data import IGNORE
from dlkit.llm.models import BLOCK_ATTENTION, load_model, resolve_model
from dlkit.llm.task import causal_lm_loss
from dlkit.nn import blockwise


def test_llama_trains_to_sdpas_numbers_through_the_blocks_and_saves_a_plain_config(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    model = load_model(resolve_model("builtin:tiny-llama"))
    assert model.config._attn_implementation == BLOCK_ATTENTION
    calls = []
    apply = blockwise._BlockCausal.apply
    monkeypatch.setattr(blockwise._BlockCausal, "apply", lambda *a: calls.append(1) or apply(*a))
    torch.manual_seed(0)
    ids = torch.randint(3, 1000, (2, 300))
    batch = {"input_ids": ids, "labels": ids.masked_fill(torch.arange(300) < 150, IGNORE)}
    results = {}
    for implementation in (BLOCK_ATTENTION, "sdpa"):
        model.set_attn_implementation(implementation)
        model.zero_grad(set_to_none=True)
        loss = causal_lm_loss(model, batch)
        loss.backward()
        results[implementation] = (loss.detach(), {n: p.grad for n, p in model.named_parameters()})
    assert len(calls) == model.config.num_hidden_layers  # the blocks ran, once per layer, for dlkit's only
    (loss, grads), (ref_loss, ref_grads) = results[BLOCK_ATTENTION], results["sdpa"]
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)

    # a padded batch keeps its mask and goes to transformers' sdpa unchanged
    model.set_attn_implementation(BLOCK_ATTENTION)
    mask = (torch.arange(300) < torch.tensor([[300], [260]])).long()
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask).logits
        model.set_attn_implementation("sdpa")
        theirs = model(input_ids=ids, attention_mask=mask).logits
    assert len(calls) == model.config.num_hidden_layers
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)

    model.set_attn_implementation(BLOCK_ATTENTION)
    model.save_pretrained(tmp_path)
    assert "dlkit" not in (tmp_path / "config.json").read_text()
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config._attn_implementation == "sdpa"


def test_gemma2_keeps_eager_attention():
    """Gemma-2 soft-caps its attention scores, which sdpa cannot do (and gives NaN with padding)."""
    assert load_model(resolve_model("builtin:tiny-gemma2")).config._attn_implementation == "eager"
