"""Transformer blocks against torch's layers, and a GPT that is causal and actually learns."""

import pytest
import torch
from torch import nn

from dlkit.nn import DecoderBlock, DecoderOnlyLM, EncoderBlock

ATOL = 1e-5
DIM, HEADS, FF = 16, 4, 32


def _randomise_norms(layer: nn.Module) -> None:
    """torch initialises LayerNorm to (1, 0); random affine parameters make a swapped or skipped norm visible."""
    with torch.no_grad():
        for module in layer.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_()


def _padding_mask(lengths: list[int], max_len: int) -> torch.Tensor:
    return torch.arange(max_len)[None, :] >= torch.tensor(lengths)[:, None]  # (B, T) True = padding


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_matches_torch(norm_first: bool, activation: str) -> None:
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(
        DIM, HEADS, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    )
    _randomise_norms(ref)
    ours = EncoderBlock(DIM, HEADS, FF, dropout=0.0, norm_first=norm_first, activation=activation)
    ours.load_from_torch(ref)
    x, padding = torch.randn(3, 6, DIM), _padding_mask([6, 4, 2], 6)

    def run(block: nn.Module, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        xi = x.clone().requires_grad_(True)
        out = block(xi, **kwargs)
        out.sin().sum().backward()
        return out, xi.grad

    out_ref, grad_ref = run(ref, src_key_padding_mask=padding)
    out, grad = run(ours, key_padding_mask=padding)
    torch.testing.assert_close(out, out_ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(grad, grad_ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_decoder_block_matches_torch(norm_first: bool, activation: str) -> None:
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(
        DIM, HEADS, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    )
    _randomise_norms(ref)
    ours = DecoderBlock(DIM, HEADS, FF, dropout=0.0, norm_first=norm_first, activation=activation)
    ours.load_from_torch(ref)
    tgt, memory = torch.randn(3, 5, DIM), torch.randn(3, 7, DIM)
    tgt_padding, memory_padding = _padding_mask([5, 3, 2], 5), _padding_mask([7, 6, 3], 7)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)

    def run(block: nn.Module, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ti, mi = tgt.clone().requires_grad_(True), memory.clone().requires_grad_(True)
        out = block(ti, mi, tgt_key_padding_mask=tgt_padding, memory_key_padding_mask=memory_padding, **kwargs)
        out.sin().sum().backward()
        return out, ti.grad, mi.grad

    for a, b in zip(run(ours), run(ref, tgt_mask=causal), strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def _tiny_lm(positional: str = "learned", **kwargs: object) -> DecoderOnlyLM:
    torch.manual_seed(0)
    return DecoderOnlyLM(
        vocab_size=7, dim=32, num_layers=2, num_heads=4, block_size=16, dropout=0.0, positional=positional, **kwargs
    )


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
def test_decoder_only_lm_is_causal(positional: str) -> None:
    model = _tiny_lm(positional).eval()
    captured = {}
    model.tok_emb.register_forward_hook(lambda _module, _inputs, out: captured.update(emb=out))
    logits, _ = model(torch.randint(0, 7, (2, 8)))
    for t in range(8):
        (grad,) = torch.autograd.grad(logits[:, t].square().sum(), captured["emb"], retain_graph=True)
        assert torch.all(grad[:, t + 1 :] == 0), f"position {t} sees the future"
        assert torch.all(grad[:, : t + 1].abs().sum(-1) > 0), f"position {t} ignores part of its past"


def test_decoder_only_lm_ties_the_head_to_the_embedding() -> None:
    model = _tiny_lm()
    assert model.lm_head.weight is model.tok_emb.weight
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    untied = _tiny_lm(tie_weights=False)
    assert untied.lm_head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()
    assert sum(p.numel() for p in untied.parameters()) == sum(p.numel() for p in model.parameters()) + 7 * 32


PATTERN = [0, 1, 0, 2, 3]  # period 5 over a vocabulary of 7; after a 0 the next token depends on the one before


def _pattern_batch(generator: torch.Generator, batch: int = 16, length: int = 17) -> torch.Tensor:
    starts = torch.randint(0, len(PATTERN), (batch, 1), generator=generator)
    positions = (starts + torch.arange(length)) % len(PATTERN)  # (B, T + 1)
    return torch.tensor(PATTERN)[positions]


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
def test_decoder_only_lm_learns_a_periodic_sequence(positional: str) -> None:
    model = _tiny_lm(positional)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        seq = _pattern_batch(generator)
        _, loss = model(seq[:, :-1], seq[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seq = _pattern_batch(generator)
    _, loss = model.eval()(seq[:, :-1], seq[:, 1:])
    assert loss.item() < 0.1
    prompt = torch.tensor([[1, 0, 2]])
    continuation = model.generate(prompt, max_new_tokens=20, top_k=1)  # runs past block_size: context is cropped
    assert continuation[0].tolist() == (PATTERN * 5)[1:24]


def test_generate_is_reproducible_with_a_generator_and_checks_length() -> None:
    model = _tiny_lm().eval()
    prompt = torch.zeros(2, 1, dtype=torch.long)
    first = model.generate(prompt, 5, temperature=2.0, generator=torch.Generator().manual_seed(3))
    second = model.generate(prompt, 5, temperature=2.0, generator=torch.Generator().manual_seed(3))
    assert first.shape == (2, 6) and torch.equal(first, second)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="positional"):
        _tiny_lm("rotary")


def test_decoder_only_lm_with_sdpa_equals_the_scratch_attention() -> None:
    """The same weights give the same logits, loss and gradients with torch's fused attention (1e-5)."""
    torch.manual_seed(0)
    scratch = DecoderOnlyLM(vocab_size=11, dim=16, num_layers=2, num_heads=4, block_size=12)
    fused = DecoderOnlyLM(vocab_size=11, dim=16, num_layers=2, num_heads=4, block_size=12, attention="sdpa")
    fused.load_state_dict(scratch.state_dict())
    idx = torch.randint(0, 11, (3, 12))
    results = []
    for model in (scratch, fused):
        logits, loss = model(idx, idx.roll(-1, dims=1))
        loss.backward()
        results.append((logits, loss, {n: p.grad for n, p in model.named_parameters()}))
    (logits_ref, loss_ref, grads_ref), (logits, loss, grads) = results
    torch.testing.assert_close(logits, logits_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, loss_ref, atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, grads_ref[name], atol=1e-5, rtol=1e-5, msg=name)
