"""The MotionRNN stack (paper Sec. 3.1): L recurrent cells with L - 1 MotionGRUs between them."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from motionrnn.cells import ConvLSTMCell, SpatioTemporalLSTMCell
from motionrnn.config import MotionRNNConfig
from motionrnn.motion_gru import MotionGRU
from motionrnn.patching import from_patches, to_patches

CELLS: dict[str, type[nn.Module]] = {
    "predrnn": SpatioTemporalLSTMCell,
    "convlstm": ConvLSTMCell,
}


class State(NamedTuple):
    """Recurrent state on the patched grid (h, w); the motion states at (ceil(h/2), ceil(w/2))."""

    h: list[torch.Tensor]  # per layer, (B, C, h, w)
    c: list[torch.Tensor]  # per layer, (B, C, h, w)
    m: torch.Tensor | None  # PredRNN's spatiotemporal memory (B, C, h, w); None for ConvLSTM
    flow: list[torch.Tensor]  # per MotionGRU, F_t (B, 2 k^2, h/2, w/2)
    trend: list[torch.Tensor]  # per MotionGRU, D_t (B, 2 k^2, h/2, w/2)


class MotionRNN(nn.Module):
    """MotionRNN over a base cell, or the plain base when ``config.motion`` is False.

    At every time step, with X^0 = the patched frame and HW^0 = W_hw * X^0 (1 x 1):

        H^l, C^l, M = Cell^l(X^l, H^l, C^l, M, HW^l)        l = 0 .. L-1
        HW^{l+1}    = H^l                                   Motion Highway (before the fusion)
        X^{l+1}     = MotionGRU^l(H^l) for l < L-1          also replaces H^l in the recurrence
        x_{t+1}     = W_out * H^{L-1}                       (1 x 1, then depth-to-space)

    States start at zero, so the output is a deterministic function of the input; any batch size
    and any frame size divisible by the patch work at every call. For speed compile the time
    step, ``model.step = torch.compile(model.step)``: one graph per step, the loop over time stays
    in Python.
    """

    def __init__(self, config: MotionRNNConfig) -> None:
        super().__init__()
        self.config = config
        cp, hidden, fs = config.patch_channels, config.hidden, config.filter_size
        cell = CELLS[config.base]
        self.cells = nn.ModuleList(
            cell(cp if layer == 0 else hidden, hidden, fs, config.forget_bias)
            for layer in range(config.layers)
        )
        n_motion = config.layers - 1 if config.motion else 0
        self.motion_grus = nn.ModuleList(
            MotionGRU(hidden, fs, config.neighbours, config.alpha) for _ in range(n_motion)
        )
        self.highway_in = (
            nn.Conv2d(cp, hidden, kernel_size=1, bias=False) if config.motion else None
        )
        self.head = nn.Conv2d(hidden, cp, kernel_size=1, bias=False)

    def initial_state(self, x: torch.Tensor) -> State:
        """Zero state for a batch of patched frames x: (B, c p^2, h, w)."""
        b, _, h, w = x.shape
        layers, n_motion = self.config.layers, len(self.motion_grus)

        def hidden() -> torch.Tensor:
            return x.new_zeros(b, self.config.hidden, h, w)

        def motion() -> torch.Tensor:
            return x.new_zeros(b, 2 * self.config.neighbours**2, (h + 1) // 2, (w + 1) // 2)

        # distinct tensors: no aliasing between state entries (which torch.compile guards on)
        return State(
            h=[hidden() for _ in range(layers)],
            c=[hidden() for _ in range(layers)],
            m=hidden() if self.config.base == "predrnn" else None,
            flow=[motion() for _ in range(n_motion)],
            trend=[motion() for _ in range(n_motion)],
        )

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One time step of the stack: patched frame x_t (B, c p^2, h, w) -> x_{t+1}, state."""
        h, c, flow, trend = list(state.h), list(state.c), list(state.flow), list(state.trend)
        m = state.m
        highway = self.highway_in(x) if self.highway_in is not None else None
        below = x
        for layer, cell in enumerate(self.cells):
            h[layer], c[layer], m = cell(below, h[layer], c[layer], m, highway)
            if highway is not None:
                highway = h[layer]
            if layer < len(self.motion_grus):
                h[layer], flow[layer], trend[layer] = self.motion_grus[layer](
                    h[layer], flow[layer], trend[layer]
                )
            below = h[layer]
        return self.head(below), State(h, c, m, flow, trend)

    def forward(
        self,
        inputs: torch.Tensor,
        n_out: int,
        targets: torch.Tensor | None = None,
        teacher: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Next-frame predictions x^_1 .. x^_{T_in + n_out - 1}, each from the frames before it.

        inputs: (B, T_in, c, H, W) observed frames x_0 .. x_{T_in - 1}.
        n_out: number of frames to forecast after them.
        targets: (B, n_out, c, H, W) the true future frames; needed only with ``teacher``.
        teacher: (B, T_in + n_out - 2) weights in [0, 1] of the true frame x_t against the model's
            own x^_t as the input of step t = 1 .. T_in + n_out - 2 (scheduled sampling, see
            ``motionrnn.sampling``). None: observed frames while there are, then own forecasts.
        Returns (B, T_in + n_out - 1, c, H, W).
        """
        t_in, p = inputs.shape[1], self.config.patch
        steps = t_in + n_out - 1
        if steps < 1:
            raise ValueError("need at least two frames in inputs + forecast")
        observed = inputs
        if teacher is not None:
            if targets is None or targets.shape[1] != n_out:
                raise ValueError("teacher forcing needs targets with n_out frames")
            if teacher.shape != (inputs.shape[0], steps - 1):
                raise ValueError(f"teacher must be (B, {steps - 1}), got {tuple(teacher.shape)}")
            observed = torch.cat([inputs, targets], dim=1)
        # time-major and contiguous, so that every step sees frames of the same layout
        truth = to_patches(observed.transpose(0, 1).contiguous(), p)  # (T, B, c p^2, h, w)
        state = self.initial_state(truth[0])
        outputs: list[torch.Tensor] = []
        for t in range(steps):
            if t == 0 or (teacher is None and t < t_in):
                x = truth[t]
            elif teacher is None:
                x = outputs[-1]
            else:
                w = teacher[:, t - 1, None, None, None].to(truth.dtype)
                x = w * truth[t] + (1 - w) * outputs[-1]
            x_next, state = self.step(x, state)
            outputs.append(x_next)
        return from_patches(torch.stack(outputs, dim=1), p)

    @torch.inference_mode()
    def generate(self, inputs: torch.Tensor, n_out: int | None = None) -> torch.Tensor:
        """Forecast (B, n_out, c, H, W) from inputs (B, T_in, c, H, W); n_out: config.frames_out."""
        n_out = self.config.frames_out if n_out is None else n_out
        return self(inputs, n_out)[:, inputs.shape[1] - 1 :]
