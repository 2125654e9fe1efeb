"""Bottleneck adapters (Houlsby et al. 2019): a few trainable parameters inserted into a frozen network."""

from __future__ import annotations

from torch import Tensor, nn

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class BottleneckAdapter(nn.Module):
    """x + up(act(down(x))): a residual low-rank detour; training touches O(hidden * bottleneck) weights."""

    def __init__(self, hidden_size: int, bottleneck: int, activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        if not 0 < bottleneck < hidden_size:
            raise ValueError(
                f"bottleneck must be between 1 and hidden_size - 1 ({hidden_size - 1}) so the adapter "
                f"compresses, got {bottleneck}."
            )
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}.")
        self.down = nn.Linear(hidden_size, bottleneck)
        self.act = _ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, hidden_size)
        self.drop = nn.Dropout(dropout)
        # Zero up-projection: the adapted model equals the base model at init (Houlsby et al. 2019 initialise
        # near identity), so inserting adapters cannot hurt before training starts.
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.down(x))  # (..., hidden) -> (..., bottleneck)
        return x + self.drop(self.up(h))  # (..., hidden)
