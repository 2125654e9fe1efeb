"""Load a ViT/DeiT classifier for the data's labels and make only what the method names trainable.

The methods (lora, last-block, linear, full) are named in dlkit.vit.methods.METHODS; their builders call the
helpers here.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from dlkit.builtin import BUILTINS
from dlkit.classify.classifier import label_maps
from dlkit.core.config import named_in
from dlkit.core.errors import ConfigError, DataError
from dlkit.core.features import FrozenFront
from dlkit.core.progress import quiet_transformers
from dlkit.core.run import Run
from dlkit.core.sources import resolve
from dlkit.core.weights import check_folder, loading
from dlkit.vit.methods import METHODS

HEAD = "classifier"
AUTO_TARGETS = (("q_proj", "v_proj"), ("query", "value"))  # transformers 5 names, then the older ones


def model_folder(spec: str) -> str:
    """A from_pretrained argument for --model: the builtin's cached folder, a local folder or a Hub id."""
    source = resolve(spec, "model", flag="--model")
    return str(BUILTINS[source.value].load()) if source.kind == "builtin" else source.value


def load_classifier(path: str, label_names: list[str]) -> nn.Module:
    """AutoModelForImageClassification with a head sized for the data (a new head when the sizes differ)."""
    from transformers import AutoConfig, AutoModelForImageClassification, DeiTForImageClassification

    id2label, label2id = label_maps(label_names)
    model_class = AutoModelForImageClassification
    if AutoConfig.from_pretrained(path).model_type == "deit":
        # distilled DeiT checkpoints name the with-teacher class, which is inference-only (two heads, no
        # single classifier); fine-tuning uses the plain class on the class token, as the DeiT recipe does
        model_class = DeiTForImageClassification
    with quiet_transformers(), loading(path, "--model"):
        return model_class.from_pretrained(path, num_labels=len(label_names), id2label=id2label, label2id=label2id,
                                           ignore_mismatched_sizes=True)


def encoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a ViT-like model (`vit.layers` in transformers 5, `vit.encoder.layer` before)."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), model)
    for name in ("layers", "encoder.layer", "encoder.layers"):
        found = base.get_submodule(name) if _has(base, name) else None
        if isinstance(found, nn.ModuleList):
            return found
    raise ConfigError(f"--method last-block: cannot find the encoder blocks of {type(model).__name__}")


def _has(module: nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
    except AttributeError:
        return False
    return True


def head(model: nn.Module) -> nn.Module:
    if not _has(model, HEAD):
        raise ConfigError(f"{type(model).__name__} has no '{HEAD}' head; supported: ViT, DeiT and other "
                          "AutoModelForImageClassification models with a 'classifier'")
    return model.get_submodule(HEAD)


def freeze_all_but(model: nn.Module, modules: list[nn.Module]) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(True)
    return model


def resolve_targets(model: nn.Module, spec: str) -> list[str]:
    """Module-name suffixes for LoRA, checked against the model's Linear layers."""
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    if spec.strip() == "auto":
        for pair in AUTO_TARGETS:
            if set(pair) <= linear:
                return list(pair)
        raise ConfigError(f"--target-modules auto: no query/value projections in {type(model).__name__}; "
                          f"pass names from: {', '.join(sorted(linear))}")
    return named_in(spec, sorted(linear), "--target-modules", f"no Linear layer of that name in {type(model).__name__}")


def apply_lora(model: nn.Module, cfg: Any) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    head(model)
    targets = resolve_targets(model, cfg.target_modules)
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=targets, modules_to_save=[HEAD], bias="none")
    return get_peft_model(model, config)


def apply_method(model: nn.Module, cfg: Any) -> nn.Module:
    return METHODS[cfg.method].build(model, cfg)


def frozen_front(model: nn.Module, method: str) -> FrozenFront | None:
    """The part of the model that `method` freezes and that comes first, or None when there is none."""
    front = METHODS[method].front
    return front(model) if front else None


def encoder_front(model: nn.Module) -> FrozenFront:
    """linear: everything before the classifier (its input is the feature)."""
    return FrozenFront([m for name, m in model.named_children() if name != HEAD], head(model), classifier_rest,
                       read="input", name="the frozen encoder")


def blocks_front(model: nn.Module) -> FrozenFront:
    """last-block: the embeddings and every block but the last (the last frozen block's output is the feature)."""
    blocks = encoder_blocks(model)
    embeddings = getattr(model, model.base_model_prefix).embeddings
    return FrozenFront([embeddings, *blocks[:-1]], blocks[-2] if len(blocks) > 1 else embeddings, last_block_rest,
                       name="the frozen blocks")


def classifier_rest(model: nn.Module, features: Tensor) -> Tensor:
    """Logits from the classifier's input."""
    return head(model)(features)


def last_block_rest(model: nn.Module, hidden: Tensor) -> Tensor:
    """Logits from the last frozen block's output (B, T, D): the last block, the final LayerNorm, the classifier on
    the class token, as ViTForImageClassification and DeiTForImageClassification compute them."""
    out = encoder_blocks(model)[-1](hidden, None)
    hidden = out[0] if isinstance(out, tuple) else out
    return head(model)(getattr(model, model.base_model_prefix).layernorm(hidden)[:, 0])


def save_classifier(model: nn.Module, processor: Any, path: Path) -> None:
    """A plain save_pretrained folder (LoRA merged in) that eval/predict and from_pretrained load directly;
    a LoRA run also keeps its small adapter in path/lora. peft is not imported for the other methods (2 CPU-seconds
    of a linear probe's run): a PeftModel exists only once peft is."""
    peft = sys.modules.get("peft")
    with quiet_transformers():
        if peft is not None and isinstance(model, peft.PeftModel):
            model.save_pretrained(path / "lora")
            (path / "lora" / "README.md").unlink(missing_ok=True)  # PEFT's empty template; the folder's card is above
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(path)
        processor.save_pretrained(path)


def load_trained(run: Run) -> tuple[nn.Module, Any, list[str]]:
    """The run's final model (eval mode), its image processor and the class names in index order."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    if not (run.model_dir / "config.json").is_file():
        raise DataError(f"{run.dir}: no trained model in {run.model_dir}; did the training finish?")
    check_folder(run.model_dir)
    with quiet_transformers(), loading(run.model_dir):
        model = AutoModelForImageClassification.from_pretrained(str(run.model_dir)).eval()
    processor = AutoImageProcessor.from_pretrained(str(run.model_dir))
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return model, processor, names
