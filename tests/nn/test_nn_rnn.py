"""LSTMCell and LSTM against torch.nn.LSTMCell / torch.nn.LSTM with copied weights."""

import pytest
import torch
from torch import nn

from dlkit.nn import LSTM, LSTMCell

ATOL = 1e-5


def test_lstm_cell_matches_torch_forward_and_gradients() -> None:
    torch.manual_seed(0)
    ref = nn.LSTMCell(5, 7)
    ours = LSTMCell(5, 7)
    ours.load_from_torch(ref)
    x, h0, c0 = torch.randn(3, 5), torch.randn(3, 7), torch.randn(3, 7)

    def run(cell: nn.Module) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        inputs = [t.clone().requires_grad_(True) for t in (x, h0, c0)]
        h, c = cell(inputs[0], (inputs[1], inputs[2]))
        (h * torch.linspace(-1, 1, 21).view(3, 7) + c.square()).sum().backward()  # both outputs feed the loss
        return h, c, [t.grad for t in inputs]

    h_ref, c_ref, grads_ref = run(ref)
    h, c, grads = run(ours)
    torch.testing.assert_close(h, h_ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(c, c_ref, atol=ATOL, rtol=0)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, atol=ATOL, rtol=0)
    for name, p_ref in ref.named_parameters():
        torch.testing.assert_close(getattr(ours, name).grad, p_ref.grad, atol=ATOL, rtol=0, msg=name)


def test_lstm_cell_defaults_to_zero_state() -> None:
    cell = LSTMCell(4, 3)
    x = torch.randn(2, 4)
    zeros = torch.zeros(2, 3)
    for a, b in zip(cell(x), cell(x, (zeros, zeros)), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("num_layers, with_state", [(1, False), (2, False), (2, True)])
def test_lstm_matches_torch_over_a_sequence(num_layers: int, with_state: bool) -> None:
    torch.manual_seed(0)
    batch, steps, inp, hid = 3, 6, 4, 5
    ref = nn.LSTM(inp, hid, num_layers=num_layers, batch_first=True)
    ours = LSTM(inp, hid, num_layers=num_layers)
    ours.load_from_torch(ref)
    x = torch.randn(batch, steps, inp)
    state = (torch.randn(num_layers, batch, hid), torch.randn(num_layers, batch, hid)) if with_state else None

    def run(lstm: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        xi = x.clone().requires_grad_(True)
        out, (h, c) = lstm(xi, state)
        (out.sin().sum() + h.square().sum() + c.sum()).backward()
        return out, h, c, xi.grad

    for a, b in zip(run(ours), run(ref), strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    for layer, cell in enumerate(ours.cells):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            ref_grad = getattr(ref, f"{name}_l{layer}").grad
            torch.testing.assert_close(getattr(cell, name).grad, ref_grad, atol=ATOL, rtol=0)


def test_lstm_dropout_acts_between_layers_only_in_training() -> None:
    torch.manual_seed(0)
    lstm = LSTM(4, 5, num_layers=2, dropout=0.5)
    x = torch.randn(2, 3, 4)
    lstm.eval()
    eval_out, _ = lstm(x)
    lstm.train()
    train_out, _ = lstm(x)
    assert not torch.allclose(eval_out, train_out)
    single = LSTM(4, 5, num_layers=1, dropout=0.5).train()  # no layer above: dropout never applies
    torch.testing.assert_close(single(x)[0], single.eval()(x)[0])


def test_lstm_rejects_incompatible_torch_module() -> None:
    with pytest.raises(ValueError, match="unidirectional"):
        LSTM(4, 5).load_from_torch(nn.LSTM(4, 5, bidirectional=True))
