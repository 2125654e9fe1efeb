"""LSTM from the gate equations, laid out like torch.nn.LSTMCell / nn.LSTM so weights copy across directly."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LSTMCell(nn.Module):
    """One LSTM step: gated additive updates to the cell state c let gradients survive long sequences.

    i, f, g, o = split(W_ih x + b_ih + W_hh h + b_hh), c' = s(f) c + s(i) tanh(g), h' = s(o) tanh(c').
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))  # rows: gates i, f, g, o
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) for every tensor, as torch does."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """x (B, I), state (h, c) each (B, H) or None for zeros -> (h', c') each (B, H)."""
        if state is None:
            zeros = x.new_zeros(x.size(0), self.hidden_size)
            state = (zeros, zeros)
        h, c = state
        gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)
        i, f, g, o = gates.chunk(4, dim=-1)  # (B, 4H) -> 4 x (B, H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    @torch.no_grad()
    def load_from_torch(self, cell: nn.LSTMCell) -> None:
        """Copy a torch.nn.LSTMCell's weights (same names, shapes and gate order)."""
        self.load_state_dict(cell.state_dict())


class LSTM(nn.Module):
    """Stacked LSTM unrolled over time, batch_first, with nn.LSTM's (num_layers, B, H) state convention."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.cells = nn.ModuleList(
            LSTMCell(input_size if layer == 0 else hidden_size, hidden_size) for layer in range(num_layers)
        )
        self.drop = nn.Dropout(dropout)  # between layers only, as in nn.LSTM

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, T, I), state (h0, c0) each (L, B, H) or None -> (out (B, T, H), (h, c) each (L, B, H))."""
        if state is None:
            zeros = x.new_zeros(len(self.cells), x.size(0), self.hidden_size)  # (L, B, H)
            state = (zeros, zeros)
        last_h, last_c = [], []
        for layer, cell in enumerate(self.cells):
            if layer > 0:
                x = self.drop(x)
            h, c = state[0][layer], state[1][layer]  # (B, H)
            outputs = []
            for t in range(x.size(1)):
                h, c = cell(x[:, t], (h, c))
                outputs.append(h)
            x = torch.stack(outputs, dim=1)  # T x (B, H) -> (B, T, H)
            last_h.append(h)
            last_c.append(c)
        return x, (torch.stack(last_h), torch.stack(last_c))  # (B, T, H), (L, B, H) x 2

    @torch.no_grad()
    def load_from_torch(self, lstm: nn.LSTM) -> None:
        """Copy a unidirectional, biased, unprojected torch.nn.LSTM's per-layer weights into the cells."""
        if lstm.bidirectional or not lstm.bias or lstm.proj_size or lstm.num_layers != len(self.cells):
            raise ValueError("torch LSTM must be unidirectional, biased, unprojected, with as many layers.")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        for layer, cell in enumerate(self.cells):
            cell.load_state_dict({name: getattr(lstm, f"{name}_l{layer}") for name in names})
