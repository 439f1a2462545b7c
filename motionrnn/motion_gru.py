"""MotionGRU (paper Sec. 3.2): a motion-based state transition placed between stacked layers."""

from __future__ import annotations

import torch
from torch import nn

from motionrnn.warp import Warp


class MotionGRU(nn.Module):
    """Learns per-point motion filters F and warps the hidden state along them.

    With H the layer's hidden state (B, C, h, w), E its encoding at half resolution with C/4
    channels, and F, D the motion filter and trend of the previous step (B, 2 k^2, h/2, w/2):

        E    = Enc(H)                                     stride-2 convolution
        u    = sigmoid(W_u * [E, F_{t-1}])                transient variation (Sec. 3.2.1),
        r    = sigmoid(W_r * [E, F_{t-1}])                a ConvGRU over motion filters
        z    = tanh(W_z * [E, r . F_{t-1}])
        F'   = u . z + (1 - u) . F_{t-1}
        D_t  = D_{t-1} + alpha (F_{t-1} - D_{t-1})        motion trend, a momentum (Sec. 3.2.2)
        F_t  = F' + D_t
        H'   = Dec(Warp(E, F_t))                          Sec. 3.2.3, see ``motionrnn.warp``
        g    = sigmoid(W_g * [H', H])
        X    = g . H' + (1 - g) . H                       replaces H in the stack and recurrence

    (The fusion is written as the reference code has it; the paper's g . H + (1 - g) . H' is the
    same with the gate's sign flipped.)

    The gate weights W_u, W_r, W_z start at zero as in the reference code; their biases do not,
    so F starts small and non-zero and the weights receive gradients from the first step.
    For an odd h (or w) Enc rounds up and Dec's output is cropped back to h.
    """

    def __init__(self, hidden: int, filter_size: int, neighbours: int, alpha: float) -> None:
        super().__init__()
        c = hidden // 4
        n2 = 2 * neighbours**2  # offset channels: a (row, column) pair per neighbour
        self.alpha = alpha
        self.enc = nn.Conv2d(hidden, c, filter_size, stride=2, padding=filter_size // 2)
        self.update_reset = nn.Conv2d(c + n2, 2 * n2, kernel_size=3, padding=1)  # [W_u; W_r]
        self.candidate = nn.Conv2d(c + n2, n2, kernel_size=3, padding=1)  # W_z
        nn.init.zeros_(self.update_reset.weight)
        nn.init.zeros_(self.candidate.weight)
        self.warp = Warp(c, neighbours)
        self.dec = nn.ConvTranspose2d(c, hidden, kernel_size=4, stride=2, padding=1)
        self.fuse = nn.Conv2d(2 * hidden, hidden, filter_size, padding=filter_size // 2)  # W_g

    def forward(
        self, h: torch.Tensor, flow: torch.Tensor, trend: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h: (B, C, h, w); flow, trend: (B, 2 k^2, ceil(h/2), ceil(w/2)) -> (X, F_t, D_t)."""
        e = self.enc(h)
        u, r = torch.sigmoid(self.update_reset(torch.cat([e, flow], dim=1))).chunk(2, dim=1)
        z = torch.tanh(self.candidate(torch.cat([e, r * flow], dim=1)))
        transient = u * z + (1 - u) * flow
        trend = trend + self.alpha * (flow - trend)
        flow = transient + trend
        warped = self.dec(self.warp(e, flow))[..., : h.shape[-2], : h.shape[-1]]
        g = torch.sigmoid(self.fuse(torch.cat([warped, h], dim=1)))
        return g * warped + (1 - g) * h, flow, trend
