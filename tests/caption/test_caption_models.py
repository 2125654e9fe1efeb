import pytest
import torch

from dlkit.caption import archs
from dlkit.caption.data import EOS_ID, PAD_ID, SOS_ID
from dlkit.caption.models import (
    ImageEncoder,
    ModelSpec,
    beam_search,
    build_model,
    caption_loss,
    doubly_stochastic_penalty,
    greedy,
)
from dlkit.core.errors import SourceError

VOCAB = 12
ARCHS = [name for name, arch in archs.ARCHS.items() if arch.decoder is not None]  # the CNN-encoder ones


def tiny(arch: str, max_len: int = 10):
    torch.manual_seed(0)
    spec = ModelSpec(
        arch=arch,
        encoder="tiny-cnn",
        vocab_size=VOCAB,
        max_len=max_len,
        image_size=32,
        embed_dim=16,
        hidden_dim=32,
        attention_dim=16,
        num_layers=1,
        num_heads=2,
        dropout=0.0,
    )
    return build_model(spec).eval()


def batch_tokens(length: int) -> torch.Tensor:
    """Two captions of 4 and 6 words, <sos> ... <eos>, padded to `length`."""
    rows = [[SOS_ID, 4, 5, 6, 7, EOS_ID], [SOS_ID, 8, 9, 10, 11, 4, 5, EOS_ID]]
    return torch.tensor([r + [PAD_ID] * (length - len(r)) for r in rows])


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_never_contributes_to_the_loss(arch):
    model = tiny(arch, max_len=16)
    features = model.encoder(torch.randn(2, 3, 32, 32)).detach()

    def loss_and_grads(length: int):
        model.zero_grad()
        loss, _ = model.loss(features, batch_tokens(length))
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.decoder.named_parameters() if p.grad is not None}

    short_loss, short_grads = loss_and_grads(8)
    long_loss, long_grads = loss_and_grads(16)  # 8 more <pad> tokens
    torch.testing.assert_close(long_loss, short_loss)
    assert short_grads.keys() == long_grads.keys()
    for name in short_grads:
        torch.testing.assert_close(long_grads[name], short_grads[name], msg=name)

    tokens = batch_tokens(16)
    logits, _ = model.logits(features, tokens)
    logits.retain_grad()
    caption_loss(logits, tokens[:, 1:]).backward()
    pad_targets = tokens[:, 1:].eq(PAD_ID)
    assert logits.grad[pad_targets].abs().max() == 0 and logits.grad[~pad_targets].abs().max() > 0


def test_attention_penalty_counts_only_real_steps():
    alphas = torch.full((1, 3, 4), 0.25)
    real = torch.tensor([[True, True, False]])
    assert doubly_stochastic_penalty(alphas, real).item() == pytest.approx((1 - 0.5) ** 2)


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_size_one_equals_greedy(arch):
    model = tiny(arch)
    with torch.no_grad():
        for p in model.decoder.out.parameters():  # a sharper output layer makes long captions likely
            p.mul_(4)
    features = model.encoder(torch.randn(3, 3, 32, 32))
    greedy_out = greedy(model, features, max_len=10)
    beam_out = beam_search(model, features, max_len=10, beam_size=1)
    for g, b in zip(greedy_out, beam_out, strict=True):
        assert g.tokens == b.tokens
        assert g.score == pytest.approx(b.score, abs=1e-5)
        if arch == "attention":
            assert len(g.alphas) == len(g.tokens) and torch.allclose(torch.tensor(g.alphas), torch.tensor(b.alphas))


def test_efficientnet_b0_builds_reports_features_and_freezes():
    encoder = ImageEncoder("efficientnet_b0")
    assert encoder.feature_dim == 1280
    with torch.no_grad():
        features = encoder.eval()(torch.randn(1, 3, 64, 64))
    assert features.shape == (1, 4, 1280)  # 64 / 32 = a 2x2 grid, no pooling, no classifier
    encoder.train().freeze(except_last_block=True)
    assert not encoder.cnn[0].training  # frozen BatchNorm uses its running statistics from the start
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("cnn.8.") for n in trainable)
    encoder.train()
    assert not encoder.cnn[0].training and encoder.cnn[8].training  # frozen BatchNorm keeps its statistics
    encoder.freeze()
    assert not any(p.requires_grad for p in encoder.parameters())


def test_pretrained_encoder_offline_is_one_sentence(monkeypatch, tmp_path):
    import urllib.request

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(SourceError, match=r"EfficientNet-B0 ImageNet weights .* pass --no-pretrained-encoder"):
        ImageEncoder("efficientnet_b0", pretrained=True)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("beam", [1, 3])
def test_decoding_never_emits_unk_pad_or_sos(arch, beam):
    from dlkit.caption.data import UNK_ID
    from dlkit.caption.models import decode

    model = tiny(arch)
    with torch.no_grad():  # the model would rather say <unk>, then <pad>, then <sos>, then a word; never <eos>
        model.decoder.out.bias.zero_()
        for token, logit in [(UNK_ID, 100.0), (PAD_ID, 99.0), (SOS_ID, 98.0), (7, 97.0), (EOS_ID, -100.0)]:
            model.decoder.out.bias[token] = logit
    features = model.encoder(torch.randn(2, 3, 32, 32))
    captions = decode(model, features, max_len=6, beam_size=beam)
    assert all(c.tokens and c.tokens[0] == 7 for c in captions), [c.tokens for c in captions]
    assert not {UNK_ID, PAD_ID, SOS_ID} & {t for c in captions for t in c.tokens}


def test_vision_encoder_decoder_never_emits_unk_pad_or_start_tokens():
    from transformers import BertTokenizerFast

    from dlkit.caption.hf import never_emitted
    from dlkit.core.sources import load_builtin

    bert = BertTokenizerFast.from_pretrained(load_builtin("tiny-bert"))  # [UNK], [PAD], [CLS] as the start token
    bert.bos_token, bert.eos_token = "[CLS]", "[SEP]"
    assert never_emitted(bert) == sorted({bert.unk_token_id, bert.pad_token_id, bert.cls_token_id})
    from transformers import AutoTokenizer

    gpt2 = AutoTokenizer.from_pretrained(load_builtin("tiny-vit-gpt2"))  # <|endoftext|> is all of them, and the end
    gpt2.pad_token = gpt2.eos_token
    assert never_emitted(gpt2) is None


def test_a_named_encoder_is_imagenet_pretrained_by_default(monkeypatch, tmp_path, capsys):
    from dlkit.caption.models import cached_weights, imagenet_weights, use_pretrained_encoder
    from dlkit.core.errors import ConfigError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr("dlkit.core.sources.url_reachable", lambda url, timeout=2.0: False)  # offline
    assert use_pretrained_encoder("efficientnet_b0", None) is False
    assert capsys.readouterr().err.count("RANDOM weights") == 1  # one line says so
    assert use_pretrained_encoder("efficientnet_b0", False) is False and not capsys.readouterr().err
    # with the weights in torch's cache (here random ones under the real file name) they are the default
    from torchvision.models import efficientnet_b0

    saved = efficientnet_b0(weights=None).state_dict()
    cached_weights(imagenet_weights("efficientnet_b0")).parent.mkdir(parents=True)
    torch.save(saved, cached_weights(imagenet_weights("efficientnet_b0")))
    assert use_pretrained_encoder("efficientnet_b0", None) is True
    encoder = ImageEncoder("efficientnet_b0", pretrained=True)
    torch.testing.assert_close(encoder.cnn[0][0].weight, saved["features.0.0.weight"])
    assert use_pretrained_encoder("tiny-cnn", None) is False
    with pytest.raises(ConfigError, match="--pretrained-encoder: --encoder tiny-cnn has no pretrained weights"):
        use_pretrained_encoder("tiny-cnn", True)


TOY_ARCH = """
import sys

import torch
from torch import nn
from torch.nn import functional as F

from dlkit.caption import archs


class GRUDecoder(nn.Module):
    def __init__(self, vocab_size, feature_dim, hidden_dim):
        super().__init__()
        self.embed, self.init_h = nn.Embedding(vocab_size, hidden_dim), nn.Linear(feature_dim, hidden_dim)
        self.gru, self.out = nn.GRU(hidden_dim, hidden_dim, batch_first=True), nn.Linear(hidden_dim, vocab_size)

    def init_state(self, features):
        return {"h": torch.tanh(self.init_h(features.mean(dim=1)))}

    def forward(self, features, tokens):
        hidden, _ = self.gru(self.embed(tokens), self.init_state(features)["h"].unsqueeze(0))
        return self.out(hidden)

    def step(self, features, state, tokens):
        out, h = self.gru(self.embed(tokens[:, -1:]), state["h"].unsqueeze(0))
        return F.log_softmax(self.out(out[:, 0]), dim=-1), {"h": h[0]}, None


def gru(spec, feature_dim, grid):
    return GRUDecoder(spec.vocab_size, feature_dim, spec.hidden_dim)


archs.ARCHS["toy-gru"] = archs.Arch("toy-gru", "a GRU decoder", gru)

from dlkit.cli import main  # noqa: E402  (the architecture is registered before the CLI reads the registry)

sys.exit(main(sys.argv[1:]))
"""


def test_an_architecture_is_one_registry_entry(tmp_path):
    """Registered before the CLI is built, a new architecture is in --arch's help and choices, trains, and its
    run is captioned by `caption eval`: nothing else names the architectures."""
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "toy.py"
    script.write_text(TOY_ARCH, encoding="utf-8")

    def dlkit(*args):
        return subprocess.run(
            [sys.executable, str(script), *map(str, args)],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )

    assert "toy-gru (a GRU decoder)" in dlkit("caption", "train", "--help").stdout
    assert (
        "choose one of lstm, attention, transformer, vit-gpt2, toy-gru"
        in dlkit("caption", "train", "--arch", "gru").stderr
    )
    run = tmp_path / "run"
    done = dlkit(
        "-q",
        "caption",
        "train",
        "--arch",
        "toy-gru",
        "--image-size",
        "32",
        "--hidden-dim",
        "16",
        "--max-steps",
        "2",
        "--batch-size",
        "16",
        "--eval-every",
        "100000",
        "--output-dir",
        run,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "checkpoints" / "final" / "model.json").read_text())["arch"] == "toy-gru"
    scored = dlkit("--json", "caption", "eval", "--run", run, "--limit", "2")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["split"] == "test"
