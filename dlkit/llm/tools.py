"""`dlkit llm inspect`, `export` and `compose` (the functions of those names): looking at a model before training,
and shipping or combining adapters after it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from dlkit.core.config import META_KEY, checked, claim_output
from dlkit.core.engine import count_parameters
from dlkit.core.errors import ConfigError
from dlkit.core.modelcard import check_push, push_folder, write_card
from dlkit.core.outputs import record
from dlkit.core.progress import info
from dlkit.core.run import Run, atomic_write_json
from dlkit.core.weights import check_folder, loading
from dlkit.llm import methods
from dlkit.llm.config import ComposeConfig, ExportConfig, InspectConfig
from dlkit.llm.data import tokenize_conversations
from dlkit.llm.evaluate import conversations_from, score
from dlkit.llm.models import (
    INFO_FILE,
    base_info,
    card_info,
    decoder_layers,
    linear_module_names,
    load_model,
    load_tokenizer,
    load_trained,
    read_info,
    resolve_model,
    target_modules,
)


def inspect(cfg: InspectConfig) -> dict[str, Any]:
    """Architecture facts and, per method, the trainable parameters it would have (nothing is trained)."""
    checked(cfg)
    model_spec, targets, rank = cfg.model, cfg.target_modules, cfg.rank
    num_virtual_tokens, unfreeze = cfg.num_virtual_tokens, cfg.unfreeze
    base = resolve_model(model_spec)
    model = load_model(base)
    layers = decoder_layers(model)
    candidates = linear_module_names(model)
    settings = SimpleNamespace(
        rank=rank,
        alpha=2.0 * rank,
        dropout=0.0,
        target_modules=targets,
        num_virtual_tokens=num_virtual_tokens,
        init_text=None,
        unfreeze=unfreeze,
    )
    chosen = target_modules(model, targets)
    rows = []
    for name, method in methods.METHODS.items():
        wrapped = method.build(load_model(base), settings, base.path)
        trainable, total = count_parameters(wrapped)
        base_total = count_parameters(model)[1]
        rows.append(
            {
                "method": name,
                "family": method.family,
                "trainable_params": trainable,
                "trainable_pct": 100.0 * trainable / base_total,
                "total_params": total,
            }
        )
    config = model.config
    return {
        "model": model_spec,
        "arch": config.model_type,
        "num_layers": len(layers),
        "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size,
        "total_params": count_parameters(model)[1],
        "layer": _layer_summary(layers[0]),
        "candidate_target_modules": candidates,
        "default_target_modules": chosen,
        "methods": rows,
    }


def _layer_summary(layer: torch.nn.Module) -> str:
    parts = [f"{name} {tuple(m.weight.shape)}" for name, m in layer.named_modules() if isinstance(m, torch.nn.Linear)]
    return f"{type(layer).__name__}: " + ", ".join(parts)


def export(cfg: ExportConfig) -> dict[str, Any]:
    """PEFT adapter folder (PeftModel.from_pretrained) or, with merge, full weights for plain transformers; each
    with its model card, uploaded to the Hub repository --push-to-hub when given."""
    checked(cfg)
    push_to_hub = cfg.push_to_hub
    check_push(push_to_hub)
    run = Run.open(cfg.run, group="llm")
    info_ = read_info(run.model_dir)
    merge = cfg.merge
    if merge and info_["family"] == "soft-prompt":
        raise ConfigError(
            f"--merge: {info_['method']} adds virtual tokens, which cannot be merged into the "
            "weights; export without --merge and load it with PeftModel.from_pretrained"
        )
    model, tokenizer, _ = load_trained(run.dir, dequantize=merge)
    held = claim_output(cfg, cfg.out or run.dir / ("merged" if merge else "export"))
    target = held.root
    record(target, folder=True)  # written whole by save_pretrained / the copy
    if merge:
        if info_["peft"]:
            model = model.merge_and_unload()
        model.save_pretrained(str(target))
        tokenizer.save_pretrained(str(target))
        atomic_write_json(target / INFO_FILE, {**info_, "peft": False, "merged": True})
        kind = "merged full weights (AutoModelForCausalLM.from_pretrained)"
    else:
        shutil.copytree(run.model_dir, target, dirs_exist_ok=True)
        kind = {
            "partial": "the trained layers (dlkit; --merge writes full weights)",
            "full": "full weights (AutoModelForCausalLM.from_pretrained)",
        }.get(info_["family"], "PEFT adapter (PeftModel.from_pretrained)")
    write_card(target, run, card_info(info_, merged=merge))
    held.release()
    info(f"exported {kind} to {target}")
    result = {"run": str(run.dir), "method": info_["method"], "merged": merge, "out": str(target), "format": kind}
    if push_to_hub:
        result["hub"] = push_folder(target, push_to_hub)
    return result


def parse_adapter(spec: str) -> tuple[Path, float]:
    path, sep, weight = spec.rpartition(":")
    if not sep or not path:
        raise ConfigError(f"--adapter {spec}: expected RUN:WEIGHT, e.g. runs/llm/a:1.0")
    try:
        return Path(path), float(weight)
    except ValueError:
        raise ConfigError(f"--adapter {spec}: the weight {weight!r} is not a number") from None


def compose(cfg: ComposeConfig) -> dict[str, Any]:
    """W = W0 + sum_i w_i * dW_i over LoRA runs of the same base (addition for multi-task, negation to forget).

    Uses PEFT's exact `cat` combination: the composed adapter stacks the weighted A matrices, so its update
    equals the weighted sum of the individual updates B_i A_i. The result is an llm run folder.
    """
    from peft import PeftModel

    checked(cfg)
    base_spec, adapter_specs, eval_data, max_new_tokens = cfg.base, cfg.adapter, cfg.eval_data, cfg.max_new_tokens
    if not adapter_specs:
        raise ConfigError("--adapter: give at least one RUN:WEIGHT")
    base = resolve_model(base_spec, "--base")
    parsed = [parse_adapter(s) for s in adapter_specs]
    for path, _ in parsed:
        run = Run.open(path, group="llm")
        run_info = read_info(run.model_dir)
        if run_info["base"] != base.identity and run_info.get("base_resolved") != base.path:
            raise ConfigError(f"--adapter {path}: trained on {run_info['base']}, not on {base.identity} (--base)")
        if run_info["method"] not in ("lora", "rslora"):
            raise ConfigError(f"--adapter {path}: composition needs lora or rslora adapters (got {run_info['method']})")
    model = load_model(base)
    names = []
    for i, (path, _) in enumerate(parsed):
        name = f"a{i}"
        model_dir = Run.open(path).model_dir
        check_folder(model_dir, "--adapter")
        with loading(model_dir, "--adapter"):
            if i == 0:
                model = PeftModel.from_pretrained(model, str(model_dir), adapter_name=name)
            else:
                model.load_adapter(str(model_dir), adapter_name=name)
        names.append(name)
    model.add_weighted_adapter(names, [w for _, w in parsed], "composed", combination_type="cat")
    model.set_adapter("composed")
    for name in names:
        model.delete_adapter(name)
    tokenizer = load_tokenizer(base)
    held = claim_output(cfg)
    out = held.root
    run = Run(out, "llm")
    run.record_folder(run.checkpoints_dir)
    run.model_dir.mkdir(parents=True)
    model.save_pretrained(str(run.model_dir), selected_adapters=["composed"])
    _flatten_adapter(run.model_dir, "composed")
    tokenizer.save_pretrained(str(run.model_dir))
    composed_info = {
        **base_info(base),
        "method": "lora",
        "family": "lora",
        "peft": True,
        "arch": model.config.model_type,
    }
    atomic_write_json(run.model_dir / INFO_FILE, composed_info)
    config = {
        "model": base_spec,
        "method": "lora",
        "adapters": adapter_specs,
        META_KEY: {"group": "llm", "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": "compose"},
    }
    atomic_write_json(run.config_path, config)
    result: dict[str, Any] = {"out": str(out), "adapters": adapter_specs}
    composed, tokenizer, _ = load_trained(out)
    for spec in eval_data:
        conversations = conversations_from(spec, tokenizer)
        examples = tokenize_conversations(tokenizer, conversations, 4096).examples
        metrics, _ = score(composed, tokenizer, examples, conversations, max_new_tokens)
        result[f"{spec}:loss"] = metrics["val_loss"]
        result[f"{spec}:exact_match"] = metrics["test_exact_match"]
    run.write_metrics({"status": "finished", "group": "llm", "method": "composed", **result})

    write_card(run.model_dir, run, card_info(composed_info))
    held.release()
    return result


def _flatten_adapter(model_dir: Path, name: str) -> None:
    """save_pretrained puts a non-default adapter in a subfolder; move it up so the folder loads directly."""
    sub = model_dir / name
    if sub.is_dir():
        for item in sub.iterdir():
            shutil.move(str(item), model_dir / item.name)
        sub.rmdir()
