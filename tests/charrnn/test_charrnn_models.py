import pytest
import torch
from torch import nn

from dlkit.charrnn import models
from dlkit.nn import DecoderOnlyLM

ARCHS = ["rnn", "gru", "lstm", "lstm-scratch", "transformer"]


def spec(arch: str, tie: bool = True) -> models.ModelSpec:
    return models.ModelSpec(
        arch, vocab_size=11, hidden_size=16, num_layers=2, num_heads=2, block_size=8, tie_weights=tie
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_loss_and_tied_weights(arch):
    torch.manual_seed(0)
    model = models.build_model(spec(arch))
    idx = torch.randint(11, (3, 8))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 8, 11)
    assert loss.item() == pytest.approx(nn.functional.cross_entropy(logits.flatten(0, 1), idx.flatten()).item())
    head, embed = (model.lm_head, model.tok_emb) if arch == "transformer" else (model.head, model.embed)
    assert head.weight is embed.weight
    untied = models.build_model(spec(arch, tie=False))
    assert sum(p.numel() for p in untied.parameters()) == sum(p.numel() for p in model.parameters()) + 11 * 16


def test_sinusoidal_positions_build_a_working_transformer():
    torch.manual_seed(0)
    sinusoidal = models.ModelSpec("transformer", 11, 16, 1, 2, 8, positional="sinusoidal")
    model = models.build_model(sinusoidal)
    assert not any("pos" in name for name, _ in model.named_parameters())  # a fixed table, nothing to learn
    idx = torch.randint(11, (2, 8))
    _, loss = model(idx, idx)
    loss.backward()
    assert torch.isfinite(loss) and model.tok_emb.weight.grad.abs().sum() > 0


def test_lstm_scratch_equals_torch_lstm_with_copied_weights():
    torch.manual_seed(0)
    ours = models.build_model(spec("lstm-scratch"))
    ref = models.build_model(spec("lstm"))
    ref.embed.load_state_dict(ours.embed.state_dict())
    ref.head.load_state_dict(ours.head.state_dict())
    for layer, cell in enumerate(ours.rnn.cells):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref.rnn, f"{name}_l{layer}").data.copy_(getattr(cell, name))
    idx = torch.randint(11, (2, 8))
    torch.testing.assert_close(ours(idx)[0], ref(idx)[0], atol=1e-5, rtol=1e-5)


def naive_samples(model, prompt, num_chars, seed, block_size=None):
    """Re-read the whole prefix at every step: what stream() must equal."""
    generator = torch.Generator().manual_seed(seed)
    idx = torch.tensor([prompt])
    out = []
    for _ in range(num_chars):
        logits, _ = model(idx if block_size is None else idx[:, -block_size:])
        new = models.next_id(logits[:, -1], 0.9, 5, generator)
        out.append(int(new))
        idx = torch.cat((idx, new), dim=1)
    return out


@pytest.mark.parametrize("arch", ["gru", "lstm", "lstm-scratch", "transformer"])
def test_streaming_equals_rereading_the_prefix(arch):
    """RNNs carry their state forward; the transformer crops to its block: both equal the slow way."""
    torch.manual_seed(0)
    model = models.build_model(spec(arch)).eval()
    block = 8 if arch == "transformer" else None
    fast = list(models.stream(model, [1, 2, 3], 20, 0.9, 5, torch.Generator().manual_seed(4)))
    assert fast == naive_samples(model, [1, 2, 3], 20, seed=4, block_size=block)


def test_top_k_and_temperature():
    logits = torch.tensor([[0.0, 1.0, 5.0, 2.0]])
    draws = [int(models.next_id(logits, 1.0, 2, torch.Generator().manual_seed(s))) for s in range(200)]
    assert set(draws) == {2, 3}
    cold = [int(models.next_id(logits, 0.05, None, torch.Generator().manual_seed(s))) for s in range(50)]
    assert set(cold) == {2}


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_save_and_load_keep_outputs_and_the_tie(tmp_path, arch):
    torch.manual_seed(0)
    model = models.build_model(spec(arch)).eval()
    models.save(model, spec(arch), "abcdefghijk", tmp_path)
    loaded, loaded_spec, chars = models.load(tmp_path)
    idx = torch.randint(11, (2, 8))
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0], atol=0, rtol=0)
    assert loaded_spec == spec(arch) and chars == "abcdefghijk"
    if arch == "transformer":
        assert isinstance(loaded, DecoderOnlyLM) and loaded.lm_head.weight is loaded.tok_emb.weight
    else:
        assert loaded.head.weight is loaded.embed.weight


def test_sdpa_attention_is_saved_and_changes_no_number(tmp_path):
    """--attention sdpa: the spec records it, and the same weights give the scratch model's logits."""
    import dataclasses
    import json

    torch.manual_seed(0)
    scratch = models.build_model(spec("transformer")).eval()
    fused_spec = dataclasses.replace(spec("transformer"), attention="sdpa")
    models.save(scratch, fused_spec, "abcdefghijk", tmp_path)
    fused, loaded_spec, _ = models.load(tmp_path)
    assert loaded_spec.attention == "sdpa" and fused.blocks[0].attn.implementation == "sdpa"
    idx = torch.randint(11, (2, 8))
    torch.testing.assert_close(fused(idx)[0], scratch(idx)[0], atol=1e-5, rtol=1e-5)
    saved = json.loads((tmp_path / models.MODEL_CONFIG).read_text())
    del saved["attention"]  # a model saved before the flag existed loads with the scratch attention
    (tmp_path / models.MODEL_CONFIG).write_text(json.dumps(saved))
    assert models.load(tmp_path)[1].attention == "scratch"
