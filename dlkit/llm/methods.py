"""Fine-tuning methods by name: ONE dict, name -> Method (family, builder). A new method is one entry.

Builders take the loaded base model and the config and return the model to train, with exactly the
parameters the method trains left trainable. PEFT is imported inside the builders, so this module is
cheap to import: `--method`'s help, the default `--lr` and `--methods` of `llm sweep` and the flags that
apply to a family are derived from METHODS in dlkit.llm.config, and the tests parametrise over it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from dlkit.core.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

Family = Literal["soft-prompt", "lora", "ia3", "partial", "full"]


@dataclass(frozen=True)
class Method:
    name: str
    family: Family
    build: Callable[[Any, Any, str], Any]  # (model, cfg, model_path) -> model to train
    help: str
    default_lr: float  # tuned on the builtin tiny models; real models set --lr
    in_sweep: bool = True  # one of `llm sweep`'s default --methods

    @property
    def peft(self) -> bool:
        return self.family in ("soft-prompt", "lora", "ia3")


def _peft(model: nn.Module, config: Any) -> nn.Module:
    from peft import get_peft_model

    return get_peft_model(model, config)


def _prompt(model, cfg, path):
    from peft import PromptTuningConfig, PromptTuningInit, TaskType

    kwargs: dict[str, Any] = {}
    if cfg.init_text:
        kwargs = {
            "prompt_tuning_init": PromptTuningInit.TEXT,
            "prompt_tuning_init_text": cfg.init_text,
            "tokenizer_name_or_path": path,
        }
    return _peft(
        model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.num_virtual_tokens, **kwargs)
    )


def _prefix(model, cfg, path):
    from peft import PrefixTuningConfig, TaskType

    from dlkit.core.compat import refuse_known_bad

    # Prefix TRAINING: PEFT's forward hands the trained keys/values to the base model as the
    # `past_key_values` kwarg, which transformers 5.24 deprecated (renamed `cache`) and removes in 5.40;
    # the compat table refuses prefix tuning from 5.40 on, and pyproject's range stops well before it.
    refuse_known_bad("prefix-train")
    return _peft(model, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.num_virtual_tokens))


def _ptuning(model, cfg, path):
    from peft import PromptEncoderConfig, TaskType

    return _peft(
        model,
        PromptEncoderConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=cfg.num_virtual_tokens,
            encoder_hidden_size=model.config.hidden_size,
        ),
    )


def _lora(dora: bool = False, rslora: bool = False):
    def build(model, cfg, path):
        from peft import LoraConfig, TaskType

        from dlkit.llm.models import target_modules

        targets = target_modules(model, cfg.target_modules)
        return _peft(
            model,
            LoraConfig(
                task_type=TaskType.CAUSAL_LM,
                r=cfg.rank,
                lora_alpha=cfg.alpha,
                lora_dropout=cfg.dropout,
                target_modules=targets,
                use_dora=dora,
                use_rslora=rslora,
            ),
        )

    return build


def _loha(model, cfg, path):
    from peft import LoHaConfig, TaskType

    from dlkit.llm.models import target_modules

    targets = target_modules(model, cfg.target_modules)
    return _peft(
        model,
        LoHaConfig(
            task_type=TaskType.CAUSAL_LM,
            r=cfg.rank,
            alpha=cfg.alpha,
            module_dropout=cfg.dropout,
            target_modules=targets,
        ),
    )


def _lokr(model, cfg, path):
    from peft import LoKrConfig, TaskType

    from dlkit.llm.models import target_modules

    targets = target_modules(model, cfg.target_modules)
    return _peft(
        model,
        LoKrConfig(
            task_type=TaskType.CAUSAL_LM,
            r=cfg.rank,
            alpha=cfg.alpha,
            module_dropout=cfg.dropout,
            target_modules=targets,
        ),
    )


def _ia3(model, cfg, path):
    from peft import IA3Config, TaskType

    from dlkit.llm.models import IA3_TARGETS, target_modules

    if cfg.target_modules:
        targets = target_modules(model, cfg.target_modules)
        feedforward = [t for t in targets if any(k in t for k in ("down", "fc2", "mlp", "c_proj"))]
    else:
        targets, feedforward = IA3_TARGETS.get(model.config.model_type, (target_modules(model, None), []))
    return _peft(
        model, IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=targets, feedforward_modules=feedforward)
    )


def _partial(model, cfg, path):
    from dlkit.llm.models import decoder_layers

    layers = decoder_layers(model)
    chosen = parse_unfreeze(cfg.unfreeze, len(layers))
    for p in model.parameters():
        p.requires_grad_(False)
    for index in chosen:
        for p in layers[index].parameters():
            p.requires_grad_(True)
    return model


def _full(model, cfg, path):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def parse_unfreeze(spec: str, num_layers: int) -> list[int]:
    """'first2,last2' or '0,1,-2,-1' (or both mixed) -> sorted distinct layer indices."""
    chosen: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        for prefix in ("first", "last"):
            if part.startswith(prefix):
                count = part[len(prefix) :]
                if not count.isdigit() or not 0 < int(count) <= num_layers:
                    raise ConfigError(
                        f"--unfreeze {part}: expected {prefix}N with 1 <= N <= {num_layers} "
                        f"(the model has {num_layers} layers)"
                    )
                n = int(count)
                chosen.update(range(n) if prefix == "first" else range(num_layers - n, num_layers))
                break
        else:
            try:
                index = int(part)
            except ValueError:
                raise ConfigError(f"--unfreeze {part}: expected a layer index, firstN or lastN") from None
            if not -num_layers <= index < num_layers:
                raise ConfigError(
                    f"--unfreeze {index}: index out of range for a model with {num_layers} layers "
                    f"(valid: {-num_layers}..{num_layers - 1})"
                )
            chosen.add(index % num_layers)
    if not chosen:
        raise ConfigError(f"--unfreeze {spec!r}: no layer selected")
    return sorted(chosen)


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "prompt", "soft-prompt", _prompt, "prompt tuning: trainable virtual token embeddings before the input", 0.1
        ),
        Method("prefix", "soft-prompt", _prefix, "prefix tuning: trainable keys/values in every layer", 0.03),
        Method(
            "ptuning", "soft-prompt", _ptuning, "P-tuning: virtual tokens produced by a small MLP prompt encoder", 0.03
        ),
        Method("lora", "lora", _lora(), "LoRA: low-rank updates B·A of the target projections", 0.02),
        Method("dora", "lora", _lora(dora=True), "DoRA: LoRA on the direction plus a trained magnitude vector", 0.02),
        Method("rslora", "lora", _lora(rslora=True), "rsLoRA: LoRA scaled by alpha/sqrt(rank)", 0.02),
        Method("loha", "lora", _loha, "LoHa: low-rank Hadamard product updates", 0.02),
        Method("lokr", "lora", _lokr, "LoKr: low-rank Kronecker product updates", 0.02, in_sweep=False),
        Method(
            "ia3",
            "ia3",
            _ia3,
            "IA3: learned rescaling of keys, values and feed-forward activations",
            0.1,
            in_sweep=False,
        ),
        Method(
            "partial", "partial", _partial, "partial unfreezing of chosen decoder layers (--unfreeze), no PEFT", 0.003
        ),
        Method("full", "full", _full, "full fine-tuning of every weight", 0.003, in_sweep=False),
    ]
}


def named(family: Family) -> list[str]:
    """The methods of one family, in registry order (for help texts and tests)."""
    return [m.name for m in METHODS.values() if m.family == family]


def build(model: nn.Module, cfg: Any, model_path: str) -> nn.Module:
    method = METHODS.get(cfg.method)
    if method is None:
        raise ConfigError(f"--method {cfg.method}: unknown method; known methods: {', '.join(METHODS)}")
    return method.build(model, cfg, model_path)
