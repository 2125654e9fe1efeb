"""adapter methods by name: ONE dict, name -> Method. A new method is one entry.

No torch here: `--method`'s help and choices come from METHODS; the functions import the model helpers when they
run. `trains` lists the modules left trainable (None: every parameter), `adapters` whether bottleneck adapters are
inserted first, `front` the frozen part that comes first (dlkit.core.features runs it once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from dlkit.core.features import FrozenFront


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    trains: Callable[[nn.Module], list[nn.Module]] | None
    adapters: bool = False
    front: Callable[[nn.Module], FrozenFront] | None = None


def _head(model: nn.Module) -> list[nn.Module]:
    from dlkit.adapter.models import HEAD

    return [model.get_submodule(HEAD)]


def _adapters_norms_and_head(model: nn.Module) -> list[nn.Module]:
    from torch import nn

    from dlkit.nn import BottleneckAdapter

    return _head(model) + [m for m in model.modules() if isinstance(m, (BottleneckAdapter, nn.LayerNorm))]


def _encoder_front(model: nn.Module) -> FrozenFront:
    from dlkit.adapter.models import encoder_front

    return encoder_front(model)


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("adapter", "bottleneck adapters + layer norms + head train", _adapters_norms_and_head, adapters=True),
        Method("head", "the classification head only", _head, front=_encoder_front),
        Method("full", "everything", None),
    ]
}


def method_help() -> str:
    """'adapter: ...; head: ...; full: everything.': --method's help."""
    return "; ".join(f"{m.name}: {m.help}" for m in METHODS.values()) + "."
