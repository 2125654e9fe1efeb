"""Bottleneck adapters (dlkit.nn.BottleneckAdapter) inserted into a frozen RoBERTa/BERT classifier.

The injector walks `named_modules()` and wraps the output projection (`dense`) of each layer's attention
output block (RobertaSelfOutput) and feed-forward output block (RobertaOutput): the adapter sees the
projection's output before dropout, the residual and the LayerNorm, as in Houlsby et al. (2019).
`houlsby` adapts both blocks, `pfeiffer` only the feed-forward one. Adapters start as the identity (zero
up-projection), so the adapted model computes exactly what the base model does until training moves them.

The methods (adapter, head, full) are named in dlkit.adapter.methods.METHODS.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit.adapter.config import parse_layers
from dlkit.adapter.methods import METHODS
from dlkit.builtin import BUILTINS
from dlkit.classify.classifier import label_maps
from dlkit.core.errors import ConfigError, DataError
from dlkit.core.features import FrozenFront
from dlkit.core.progress import quiet_transformers
from dlkit.core.run import Run
from dlkit.core.sources import resolve
from dlkit.core.weights import check_folder, loading
from dlkit.nn import BottleneckAdapter

HEAD = "classifier"
ADAPTER_FILE = "adapters.json"
# model_type -> (attention output block, feed-forward output block): the classes whose `dense` gets an adapter
SUPPORTED = {
    "roberta": ("RobertaSelfOutput", "RobertaOutput"),
    "xlm-roberta": ("XLMRobertaSelfOutput", "XLMRobertaOutput"),
    "bert": ("BertSelfOutput", "BertOutput"),
}
LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


class AdaptedLinear(nn.Module):
    """A Linear followed by a bottleneck adapter: adapter(linear(x))."""

    def __init__(self, linear: nn.Linear, adapter: BottleneckAdapter):
        super().__init__()
        self.linear = linear
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.linear(x))  # (B, T, hidden)


def model_folder(spec: str) -> str:
    """A from_pretrained argument for --model: the builtin's cached folder, a local folder or a Hub id."""
    source = resolve(spec, "model", flag="--model")
    return str(BUILTINS[source.value].load()) if source.kind == "builtin" else source.value


def adapter_settings(cfg: Any, model_config: Any) -> dict[str, Any] | None:
    """What to insert, checked against the model before anything is built; None for a method without adapters."""
    if not METHODS[cfg.method].adapters:
        return None
    model_type = model_config.model_type
    if model_type not in SUPPORTED:
        raise ConfigError(
            f"--model {cfg.model}: adapters support model types {', '.join(SUPPORTED)}, not {model_type!r}"
        )
    hidden = model_config.hidden_size
    if not 0 < cfg.bottleneck < hidden:
        raise ConfigError(
            f"--bottleneck must be between 1 and the hidden size - 1 ({hidden - 1}) so the adapter "
            f"compresses (got {cfg.bottleneck})"
        )
    layers = parse_layers(cfg.layers, model_config.num_hidden_layers)
    return {
        "model_type": model_type,
        "placement": cfg.placement,
        "bottleneck": cfg.bottleneck,
        "layers": layers,
        "activation": cfg.adapter_activation,
        "dropout": cfg.adapter_dropout,
        "hidden_size": hidden,
    }


def insert_adapters(model: nn.Module, settings: dict[str, Any]) -> list[str]:
    """Wrap the chosen blocks' `dense` with an adapter; returns the names of the wrapped modules."""
    attention_block, ff_block = SUPPORTED[settings["model_type"]]
    wanted = {ff_block} if settings["placement"] == "pfeiffer" else {attention_block, ff_block}
    layers = set(settings["layers"])
    wrapped = []
    for name, module in list(model.named_modules()):
        match = LAYER_INDEX.search(f".{name}.")
        if type(module).__name__ not in wanted or match is None or int(match.group(1)) not in layers:
            continue
        if not isinstance(module.dense, nn.Linear):
            raise ConfigError(f"{name}.dense is a {type(module.dense).__name__}, not a Linear; cannot add an adapter")
        adapter = BottleneckAdapter(
            settings["hidden_size"], settings["bottleneck"], settings["activation"], settings["dropout"]
        ).to(module.dense.weight.device)
        module.dense = AdaptedLinear(module.dense, adapter)
        wrapped.append(f"{name}.dense")
    if not wrapped:
        raise ConfigError(f"no {' or '.join(sorted(wanted))} blocks found for --layers {settings['layers']}")
    return wrapped


def freeze_for(model: nn.Module, method: str) -> None:
    """Leave trainable only the modules the method trains (every parameter for full)."""
    trains = METHODS[method].trains
    if trains is None:
        return
    for p in model.parameters():
        p.requires_grad_(False)
    for module in trains(model):
        for p in module.parameters():
            p.requires_grad_(True)


def frozen_front(model: nn.Module, method: str) -> FrozenFront | None:
    """The part of the model that `method` freezes and that comes first, or None when there is none."""
    front = METHODS[method].front
    return front(model) if front else None


def encoder_front(model: nn.Module) -> FrozenFront:
    """head: everything before the classifier is frozen, and the classifier's input is the feature (RoBERTa's head
    reads the first token of the sequence it gets, so only that token is kept)."""
    return FrozenFront(
        [m for name, m in model.named_children() if name != HEAD],
        model.get_submodule(HEAD),
        head_rest,
        read="input",
        pick=_first_token,
        name="the frozen encoder",
    )


def head_rest(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Logits from the classifier's input."""
    return model.get_submodule(HEAD)(features)


def _first_token(x: torch.Tensor) -> torch.Tensor:
    return x[:, :1] if x.dim() == 3 else x  # (B, T, H) -> (B, 1, H); checked against the whole model before use


def load_classifier(path: str, label_names: list[str]) -> nn.Module:
    """AutoModelForSequenceClassification with a head sized for the data (a new head when sizes differ)."""
    from transformers import AutoModelForSequenceClassification

    id2label, label2id = label_maps(label_names)
    with quiet_transformers(), loading(path, "--model"):
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(label_names), id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True
        )
    if not isinstance(getattr(model, HEAD, None), nn.Module):
        raise ConfigError(f"{type(model).__name__} has no '{HEAD}' head")
    return model


def build(path: str, label_names: list[str], method: str, settings: dict[str, Any] | None) -> nn.Module:
    model = load_classifier(path, label_names)
    if settings is not None:
        insert_adapters(model, settings)
    freeze_for(model, method)
    return model


def save(
    model: nn.Module, tokenizer: Any, settings: dict[str, Any] | None, path: Path, trained_names: list[str], spec: str
) -> None:
    """full: a plain save_pretrained folder. adapter and head: what trained (adapters, LayerNorms, the head) on the
    fingerprinted base `spec`, config.json for the labels, and adapters.json saying where adapters go, which
    `load` puts back together."""
    from dlkit.core.engine import save_trained

    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path)
    if all(p.requires_grad for p in model.parameters()):
        with quiet_transformers():
            model.save_pretrained(path)
        return
    model.config.save_pretrained(path)
    save_trained(model, trained_names, spec, path)
    if settings is not None:
        (path / ADAPTER_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def load(path: Path) -> nn.Module:
    """A model saved by `save`, in eval mode."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from dlkit.core.engine import is_trained_folder, load_trained_tensors, trained_info

    check_folder(path)
    if not is_trained_folder(path):
        with quiet_transformers(), loading(path):
            return AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    config = AutoConfig.from_pretrained(str(path))
    names = [config.id2label[i] for i in range(config.num_labels)]
    model = load_classifier(model_folder(trained_info(path)["source"]), names).float()
    adapter_file = path / ADAPTER_FILE
    if adapter_file.is_file():
        insert_adapters(model, json.loads(adapter_file.read_text(encoding="utf-8")))
    load_trained_tensors(model, path)
    return model.eval()


def load_trained(run: Run) -> tuple[nn.Module, Any, list[str]]:
    """The run's final model (eval mode), its tokenizer and the class names in index order."""
    from transformers import AutoTokenizer

    if not (run.model_dir / "config.json").is_file():
        raise DataError(f"{run.dir}: no trained model in {run.model_dir}; did the training finish?")
    model = load(run.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(run.model_dir))
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return model, tokenizer, names
