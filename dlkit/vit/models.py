"""Load a ViT/DeiT classifier for the data's labels and make only what the method names trainable.

The methods (lora, last-block, linear, full) are named in dlkit.vit.methods.METHODS; their builders call the
helpers here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from dlkit.vit.config import ExportConfig

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
        return model_class.from_pretrained(
            path, num_labels=len(label_names), id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True
        )


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
        raise ConfigError(
            f"{type(model).__name__} has no '{HEAD}' head; supported: ViT, DeiT and other "
            "AutoModelForImageClassification models with a 'classifier'"
        )
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
        raise ConfigError(
            f"--target-modules auto: no query/value projections in {type(model).__name__}; "
            f"pass names from: {', '.join(sorted(linear))}"
        )
    return named_in(spec, sorted(linear), "--target-modules", f"no Linear layer of that name in {type(model).__name__}")


def apply_lora(model: nn.Module, cfg: Any) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    head(model)
    targets = resolve_targets(model, cfg.target_modules)
    config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        modules_to_save=[HEAD],
        bias="none",
    )
    return get_peft_model(model, config)


def apply_method(model: nn.Module, cfg: Any) -> nn.Module:
    return METHODS[cfg.method].build(model, cfg)


def frozen_front(model: nn.Module, method: str) -> FrozenFront | None:
    """The part of the model that `method` freezes and that comes first, or None when there is none."""
    front = METHODS[method].front
    return front(model) if front else None


def encoder_front(model: nn.Module) -> FrozenFront:
    """linear: everything before the classifier (its input is the feature)."""
    return FrozenFront(
        [m for name, m in model.named_children() if name != HEAD],
        head(model),
        classifier_rest,
        read="input",
        name="the frozen encoder",
    )


def blocks_front(model: nn.Module) -> FrozenFront:
    """last-block: the embeddings and every block but the last (the last frozen block's output is the feature)."""
    blocks = encoder_blocks(model)
    embeddings = getattr(model, model.base_model_prefix).embeddings
    return FrozenFront(
        [embeddings, *blocks[:-1]],
        blocks[-2] if len(blocks) > 1 else embeddings,
        last_block_rest,
        name="the frozen blocks",
    )


def classifier_rest(model: nn.Module, features: Tensor) -> Tensor:
    """Logits from the classifier's input."""
    return head(model)(features)


def last_block_rest(model: nn.Module, hidden: Tensor) -> Tensor:
    """Logits from the last frozen block's output (B, T, D): the last block, the final LayerNorm, the classifier on
    the class token, as ViTForImageClassification and DeiTForImageClassification compute them."""
    out = encoder_blocks(model)[-1](hidden, None)
    hidden = out[0] if isinstance(out, tuple) else out
    return head(model)(getattr(model, model.base_model_prefix).layernorm(hidden)[:, 0])


def save_classifier(model: nn.Module, processor: Any, path: Path, trained_names: list[str], spec: str) -> None:
    """What trained, beside config.json (the labels) and the image processor: LoRA's adapter in PEFT format (with
    the classifier), or for last-block and linear the trained tensors on the fingerprinted base `spec`; full
    fine-tuning, a plain save_pretrained folder. `dlkit vit export` writes any of them as plain weights. peft is not
    imported for the methods without LoRA (2 CPU-seconds of a linear probe's run): a PeftModel exists only once peft
    is."""
    from dlkit.core.engine import save_trained

    peft = sys.modules.get("peft")

    path.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        if peft is not None and isinstance(model, peft.PeftModel):
            model.save_pretrained(path)
            model.get_base_model().config.save_pretrained(path)
        elif any(not p.requires_grad for p in model.parameters()):
            save_trained(model, trained_names, spec, path)
            model.config.save_pretrained(path)
        else:
            model.save_pretrained(path)
        processor.save_pretrained(path)


def load_trained(run: Run) -> tuple[nn.Module, Any, list[str]]:
    """The run's final model (eval mode), its image processor and the class names in index order."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    from dlkit.core.engine import is_trained_folder, load_trained_tensors, trained_info

    folder = run.model_dir
    if not (folder / "config.json").is_file():
        raise DataError(f"{run.dir}: no trained model in {folder}; did the training finish?")
    check_folder(folder)
    config = AutoConfig.from_pretrained(str(folder))
    names = [config.id2label[i] for i in range(config.num_labels)]
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        base = model_folder(run.read_config()["model"])  # as the run named it (builtin:, a path, a Hub id)
        with quiet_transformers(), loading(folder):
            model = PeftModel.from_pretrained(load_classifier(base, names), str(folder))
    elif is_trained_folder(folder):
        model = load_classifier(model_folder(trained_info(folder)["source"]), names).float()
        load_trained_tensors(model, folder)
    else:
        with quiet_transformers(), loading(folder):
            model = AutoModelForImageClassification.from_pretrained(str(folder))
    processor = AutoImageProcessor.from_pretrained(str(folder))
    return model.eval(), processor, names


def export(cfg: ExportConfig) -> dict[str, Any]:
    """The run's model as a plain save_pretrained folder (LoRA merged, trained tensors put on their base) that
    AutoModelForImageClassification.from_pretrained loads without dlkit or PEFT, with the image processor."""
    from dlkit.core.config import checked, claim_output
    from dlkit.core.outputs import record
    from dlkit.core.run import atomic_write_json

    checked(cfg)
    run = Run.open(cfg.run, group="vit")
    model, processor, _ = load_trained(run)
    held = claim_output(cfg, cfg.out or run.dir / "export")
    target = held.root
    record(target, folder=True)  # written whole by save_pretrained
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    with quiet_transformers():
        model.save_pretrained(target)
    processor.save_pretrained(target)
    method = run.read_config().get("method", "")
    atomic_write_json(target / "dlkit_vit.json", {"run": str(run.dir), "method": method, "merged": True})
    held.release()
    return {
        "run": str(run.dir),
        "method": method,
        "out": str(target),
        "format": "plain weights (AutoModelForImageClassification.from_pretrained)",
    }
