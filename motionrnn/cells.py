"""Base recurrent cells, each with the Motion Highway (paper Sec. 3.1).

Every cell has the call signature ``cell(x, h, c, m, highway) -> (h, c, m)``: x is the input from
below, (h, c) the cell's own hidden and cell state, m PredRNN's spatiotemporal memory (ConvLSTM has
none and passes it through) and highway the Motion Highway input, or None for the plain base.
The gate convolutions are fused: one convolution of the concatenated inputs per memory produces
all of that memory's gates (same parameters as the reference's separate W_x*, W_h*, W_m*).
"""

from __future__ import annotations

import torch
from torch import nn


def highway_output(
    o: torch.Tensor, content: torch.Tensor, highway: torch.Tensor | None
) -> torch.Tensor:
    """H = o . content + (1 - o) . HW (Motion Highway), or o . content without a highway."""
    if highway is None:
        return o * content
    return o * content + (1 - o) * highway


class SpatioTemporalLSTMCell(nn.Module):
    """PredRNN's spatiotemporal LSTM (Wang et al. 2017) with the Motion Highway.

    i, f, g, o   = W_xh * [X, H_{t-1}]            (gate pre-activations)
    i', f', g'   = W_xm * [X, M]
    C_t  = sigmoid(f + b_f) . C_{t-1} + sigmoid(i) . tanh(g)
    M'   = sigmoid(f' + b_f) . M + sigmoid(i') . tanh(g')      M zig-zags through the stack
    o    = sigmoid(o + W_o * [C_t, M'])
    H_t  = o . tanh(W_1x1 * [C_t, M']) + (1 - o) . HW
    """

    def __init__(self, in_channels: int, hidden: int, filter_size: int, forget_bias: float) -> None:
        super().__init__()
        pad = filter_size // 2
        self.forget_bias = forget_bias
        self.gates_h = nn.Conv2d(
            in_channels + hidden, 4 * hidden, filter_size, padding=pad, bias=False
        )
        self.gates_m = nn.Conv2d(
            in_channels + hidden, 3 * hidden, filter_size, padding=pad, bias=False
        )
        self.gate_o = nn.Conv2d(2 * hidden, hidden, filter_size, padding=pad, bias=False)
        self.memory = nn.Conv2d(2 * hidden, hidden, kernel_size=1, bias=False)  # W_1x1

    def forward(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        m: torch.Tensor,
        highway: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        i, f, g, o = self.gates_h(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        i_m, f_m, g_m = self.gates_m(torch.cat([x, m], dim=1)).chunk(3, dim=1)
        c = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(g)
        m = torch.sigmoid(f_m + self.forget_bias) * m + torch.sigmoid(i_m) * torch.tanh(g_m)
        cm = torch.cat([c, m], dim=1)
        o = torch.sigmoid(o + self.gate_o(cm))
        return highway_output(o, torch.tanh(self.memory(cm)), highway), c, m


class ConvLSTMCell(nn.Module):
    """ConvLSTM (Shi et al. 2015) with the Motion Highway.

    i, f, g, o = W * [X, H_{t-1}]
    C_t = sigmoid(f + b_f) . C_{t-1} + sigmoid(i) . tanh(g)
    H_t = sigmoid(o) . tanh(C_t) + (1 - sigmoid(o)) . HW
    """

    def __init__(self, in_channels: int, hidden: int, filter_size: int, forget_bias: float) -> None:
        super().__init__()
        self.forget_bias = forget_bias
        self.gates = nn.Conv2d(
            in_channels + hidden, 4 * hidden, filter_size, padding=filter_size // 2, bias=False
        )

    def forward(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        m: None,
        highway: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        i, f, g, o = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(g)
        return highway_output(torch.sigmoid(o), torch.tanh(c), highway), c, m
