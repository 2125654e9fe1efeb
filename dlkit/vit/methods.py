"""vit fine-tuning methods by name: ONE dict, name -> Method. A new method is one entry.

No torch here: `--method`'s help and choices come from METHODS; a builder imports the model helpers of
dlkit.vit.models when it runs. `build` leaves trainable exactly what the method trains; `front` names the frozen
part that comes first (dlkit.core.features runs it once), None when nothing in front is frozen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from dlkit.core.features import FrozenFront


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    build: Callable[[nn.Module, Any], nn.Module]  # (model, cfg) -> the model to train
    front: Callable[[nn.Module], FrozenFront] | None = None


def _lora(model: nn.Module, cfg: Any) -> nn.Module:
    from dlkit.vit.models import apply_lora

    return apply_lora(model, cfg)


def _last_block(model: nn.Module, cfg: Any) -> nn.Module:
    from dlkit.vit.models import encoder_blocks, freeze_all_but, head

    return freeze_all_but(model, [encoder_blocks(model)[-1], head(model)])


def _linear(model: nn.Module, cfg: Any) -> nn.Module:
    from dlkit.vit.models import freeze_all_but, head

    return freeze_all_but(model, [head(model)])


def _full(model: nn.Module, cfg: Any) -> nn.Module:
    return model


def _encoder_front(model: nn.Module) -> FrozenFront:
    from dlkit.vit.models import encoder_front

    return encoder_front(model)


def _blocks_front(model: nn.Module) -> FrozenFront:
    from dlkit.vit.models import blocks_front

    return blocks_front(model)


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("lora", "LoRA on --target-modules + the classifier", _lora),
        Method("last-block", "the last encoder block + the classifier", _last_block, _blocks_front),
        Method("linear", "the classifier only", _linear, _encoder_front),
        Method("full", "everything", _full),
    ]
}


def method_help() -> str:
    """'lora: LoRA on ...; last-block: ...': --method's help."""
    return "; ".join(f"{m.name}: {m.help}" for m in METHODS.values()) + "."
