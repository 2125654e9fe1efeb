"""Bottleneck adapters start as the identity and learn from there."""

import pytest
import torch

from dlkit.nn import BottleneckAdapter


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_adapter_is_exactly_the_identity_at_init(activation: str) -> None:
    adapter = BottleneckAdapter(16, 4, activation=activation)
    x = torch.randn(2, 5, 16)
    assert torch.equal(adapter(x), x)


def test_adapter_changes_after_one_optimizer_step() -> None:
    torch.manual_seed(0)
    adapter = BottleneckAdapter(16, 4)
    x, target = torch.randn(8, 16), torch.randn(8, 16)
    before = adapter(x).detach()
    optimizer = torch.optim.SGD(adapter.parameters(), lr=0.1)
    torch.nn.functional.mse_loss(adapter(x), target).backward()
    optimizer.step()
    assert not torch.allclose(adapter(x), before)
    assert sum(p.numel() for p in adapter.parameters()) == 16 * 4 + 4 + 4 * 16 + 16


@pytest.mark.parametrize("bottleneck", [0, -1, 16, 32])
def test_adapter_rejects_bottlenecks_that_do_not_compress(bottleneck: int) -> None:
    with pytest.raises(ValueError, match="bottleneck must be between 1 and hidden_size - 1"):
        BottleneckAdapter(16, bottleneck)


def test_adapter_rejects_unknown_activation() -> None:
    with pytest.raises(ValueError, match="activation"):
        BottleneckAdapter(16, 4, activation="swish")
