"""The MotionRNN stack (paper Sec. 3.1): L recurrent cells with L - 1 MotionGRUs between them,
and its output: the next frame directly (the paper), or advected (NowcastNet's evolution); and
its checkpoints: safetensors state dicts with the config as JSON metadata (nothing unpickled)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from motionrnn.config import MotionRNNConfig
from motionrnn.layers import (
    ConvLSTMCell,
    MotionGRU,
    SpatioTemporalLSTMCell,
    from_patches,
    sample,
    to_patches,
    trace_back,
)
from motionrnn.prior import SprogPrior
from motionrnn.sprog import Sprog, match_distribution

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


KNOWN = 0.999  # a forecast value read at least this much from known cells is known


class Prediction(NamedTuple):
    """What ``MotionRNN.forward`` returns."""

    frames: torch.Tensor  # (B, T, c, H, W) predictions of frames start .. start + T - 1
    motion: torch.Tensor | None  # (B, T, 2, h, w) learned motion corrections (advective only)
    known: torch.Tensor | None  # (B, T, 1, H, W) share of each value read from known cells
    # (advective only: the coverage advected like the frame; 0 where it comes from outside the
    # map or from cells no radar saw, whose value the forecast cannot know)
    start: int = 1  # index of the first predicted frame among inputs + targets: 1 (next-frame
    # predictions from the second input on), T_in for the sprog output (the leads only)


class Advection(NamedTuple):
    """Where an advective forecast stands: the frame it advects and the displacement back
    to it."""

    reference: torch.Tensor  # (B, c, H, W)
    displacement: torch.Tensor  # (B, 2, H, W) pixels, x first

    def restart(self, frame: torch.Tensor, w: torch.Tensor) -> Advection:
        """Where sample b is fed a true frame (w_b = 1), advect that frame from here on;
        where it is fed its own forecast (w_b = 0), go on."""
        keep = 1 - w
        return Advection(w * frame + keep * self.reference, keep * self.displacement)


def clip_at_dry(x: torch.Tensor) -> torch.Tensor:
    """max(0, x), with the gradient of x (straight through): a cell clipped at dry still learns
    where rain was missed. With relu's gradient it could not: a source that dried a cell out
    once got no signal there again, so the model could only take rain away."""
    return x + (F.relu(x) - x).detach()


class MotionRNN(nn.Module):
    """MotionRNN over a base cell, or the plain base when ``config.motion`` is False.

    At every time step, with X^0 = the patched input and HW^0 = W_hw * X^0 (1 x 1):

        H^l, C^l, M = Cell^l(X^l, H^l, C^l, M, HW^l)        l = 0 .. L-1
        HW^{l+1}    = H^l                                   Motion Highway (before the fusion)
        X^{l+1}     = MotionGRU^l(H^l) for l < L-1          also replaces H^l in the recurrence
        y_t         = W_out * H^{L-1}                       (1 x 1)

    The input is the frame x_t, with ``context`` also the coverage mask and the motion prior
    V / motion_scale (pixels per step, e.g. pysteps' Lucas-Kanade motion of the input frames).
    The output (``config.output``):

        frame:      x_{t+1} = depth-to-space(y_t)                       the paper
        advective:  v_t     = V + upsample(y_t[:2])                     motion, corrected
                    s_t     = depth-to-space(y_t[2:])                   source (growth, decay)
                    D_t     = D_{t-1} traced back along v_t             ``motionrnn.layers``
                    x_{t+1} = max(0, x_ref(x + D_t) + s_t)

    where x_ref is the last true frame fed (D restarts at zero with it). s_t is the whole change
    of intensity since x_ref, not an increment carried on: a carried source compounds over the
    rollout (a per-step bias b is 12 b at lead 12), which made training swing between drying
    out and flooding the long leads (bench/RESULTS.md). W_out starts at zero in the advective
    model, so the untrained model advects the last frame along V: the extrapolation nowcast.

    States start at zero, so the output is a deterministic function of the input; any batch size
    and any frame size divisible by the patch work at every call. For speed compile the time
    step, ``model.step = torch.compile(model.step)``: one graph per step, the loop over time stays
    in Python.
    """

    def __init__(self, config: MotionRNNConfig) -> None:
        super().__init__()
        self.config = config
        cp, hidden, fs = config.patch_channels, config.hidden, config.filter_size
        c_in = config.input_channels
        cell = CELLS[config.base]
        self.cells = nn.ModuleList(
            cell(c_in if layer == 0 else hidden, hidden, fs, config.forget_bias)
            for layer in range(config.layers)
        )
        n_motion = config.layers - 1 if config.motion else 0
        self.motion_grus = nn.ModuleList(
            MotionGRU(hidden, fs, config.neighbours, config.alpha) for _ in range(n_motion)
        )
        self.highway_in = (
            nn.Conv2d(c_in, hidden, kernel_size=1, bias=False) if config.motion else None
        )
        self.advective = config.output in ("advective", "sprog")
        self.prior = (
            SprogPrior(
                config.frames_out,
                config.sprog_levels,
                config.wet_level,
                config.heavy_level,
                config.heavy_width,
            )
            if config.output == "sprog"
            else None
        )
        # advective: 2 channels of motion correction (at the patched resolution), then the source
        self.head = nn.Conv2d(hidden, cp + (2 if self.advective else 0), kernel_size=1, bias=False)
        if self.advective:
            nn.init.zeros_(self.head.weight)

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
        """One time step of the stack: patched input (B, input_channels, h, w) -> y_t, state."""
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
        *,
        coverage: torch.Tensor | None = None,
        motion: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        teacher: torch.Tensor | None = None,
        seen: torch.Tensor | None = None,
        prior: Sprog | None = None,
    ) -> Prediction:
        """Next-frame predictions x^_1 .. x^_{T_in + n_out - 1}, each from the frames before it.

        inputs: (B, T_in, c, H, W) observed frames x_0 .. x_{T_in - 1}.
        n_out: number of frames to forecast after them.
        coverage: (B, 1, H, W) 1 where the radar sees, 0 where the value is unknown (context).
        motion: (B, 2, H, W) the motion prior V in pixels per step, x first (context; the
            advective output moves along it).
        targets: (B, n_out, c, H, W) the true future frames; needed only with ``teacher``.
        teacher: (B, T_in + n_out - 2) weights in [0, 1] of the true frame x_t against the model's
            own x^_t as the input of step t = 1 .. T_in + n_out - 2 (scheduled sampling, see
            ``motionrnn.training``). None: observed frames while there are, then own forecasts.
        seen: (B, T_in, 1, H, W) where each input frame is known (sprog; default: coverage).
        prior: the prior at leads 1 .. n_out (sprog; default: ``self.prior`` of these inputs;
            training passes one computed on the whole domain and cut like the inputs).
        """
        if self.prior is not None:
            if teacher is not None:
                raise ValueError("the sprog output trains on its own rollouts: no teacher")
            return self._refine(inputs, n_out, coverage, motion, seen, prior)
        t_in, p = inputs.shape[1], self.config.patch
        steps = t_in + n_out - 1
        if steps < 1:
            raise ValueError("need at least two frames in inputs + forecast")
        b, _, c, height, width = inputs.shape
        if self.config.context and (coverage is None or motion is None):
            raise ValueError("this model takes the coverage and the motion prior as inputs")
        if self.advective and motion is None:
            raise ValueError("the advective model needs the motion prior")
        observed = inputs
        if teacher is not None:
            if targets is None or targets.shape[1] != n_out:
                raise ValueError("teacher forcing needs targets with n_out frames")
            if teacher.shape != (b, steps - 1):
                raise ValueError(f"teacher must be (B, {steps - 1}), got {tuple(teacher.shape)}")
            observed = torch.cat([inputs, targets], dim=1)
        truth = observed.transpose(0, 1)  # (T, B, c, H, W)
        context = None
        if self.config.context:
            context = torch.cat([coverage, motion / self.config.motion_scale], dim=1)
        cover = inputs.new_ones(b, 1, height, width) if coverage is None else coverage
        zeros = inputs.new_zeros(b, c, height, width)
        advection = Advection(zeros, inputs.new_zeros(b, 2, height, width))
        state: State | None = None
        frames: list[torch.Tensor] = []
        corrections: list[torch.Tensor] = []
        known: list[torch.Tensor] = []
        for t in range(steps):
            if t == 0 or (teacher is None and t < t_in):
                w, x = inputs.new_ones(b, 1, 1, 1), truth[t]
            elif teacher is None:
                w, x = inputs.new_zeros(b, 1, 1, 1), frames[-1]
            else:
                w = teacher[:, t - 1, None, None, None].to(inputs.dtype)
                x = w * truth[t] + (1 - w) * frames[-1]
            step_in = x if context is None else torch.cat([x, context], dim=1)
            step_in = to_patches(step_in.contiguous(), p)
            if state is None:
                state = self.initial_state(step_in)
            y, state = self.step(step_in, state)
            if not self.advective:
                frames.append(from_patches(y, p))
                continue
            correction, source = y[:, :2], from_patches(y[:, 2:], p)
            velocity = motion + F.interpolate(
                correction, scale_factor=p, mode="bilinear", align_corners=False
            )
            advection = advection.restart(x, w)
            displacement = trace_back(advection.displacement, velocity)
            advected = sample(advection.reference, displacement)
            frame = clip_at_dry(advected + source)  # no rain below none
            advection = Advection(advection.reference, displacement)
            frames.append(frame)
            corrections.append(correction)
            known.append(sample(cover, displacement.detach()))
        if not self.advective:
            return Prediction(torch.stack(frames, dim=1), None, None)
        return Prediction(
            torch.stack(frames, dim=1), torch.stack(corrections, dim=1), torch.stack(known, dim=1)
        )

    def _refine(
        self,
        inputs: torch.Tensor,
        n_out: int,
        coverage: torch.Tensor | None,
        motion: torch.Tensor | None,
        seen: torch.Tensor | None,
        prior: Sprog | None,
    ) -> Prediction:
        """The sprog output: the prior P_k (``motionrnn.prior``) refined by the recurrent stack.

        Every step reads its frame, the context, the prior frame at the lead it forecasts and
        that lead (k / frames_out; 0 on the input steps, whose outputs are not used). At lead k:

            v_k  = upsample(y_k[:2])                     motion correction (residual)
            D_k  = D_{k-1} traced back along v_k         ``motionrnn.layers``, D_0 = 0
            s_k  = depth-to-space(y_k[2:])               source
            x_k  = match(P_k(x + D_k) + s_k, P_k)        on the cells known at lead k

        The match (``motionrnn.sprog.match_distribution``) gives x_k the distribution of P_k:
        the stack moves rain and reorders it, the prior decides how much there is. With the
        head at zero (the start) x_k = P_k.
        """
        b, t_in, _, height, width = inputs.shape
        if coverage is None or motion is None:
            raise ValueError("the sprog output needs the coverage and the motion prior")
        if t_in < 3:
            raise ValueError(f"the sprog output needs at least 3 input frames, got {t_in}")
        if prior is None:  # S-PROG in float32 whatever the autocast
            known = coverage[:, None].expand(-1, t_in, -1, -1, -1) if seen is None else seen
            with torch.autocast(inputs.device.type, enabled=False):
                prior = self.prior(
                    inputs[:, :, 0].float(), known[:, :, 0] > 0, motion.float(), n_out
                )
        p, scale = self.config.patch, self.config.motion_scale
        context = torch.cat([coverage, motion / scale], dim=1)
        displacement = inputs.new_zeros(b, 2, height, width)
        state: State | None = None
        frames: list[torch.Tensor] = []
        corrections: list[torch.Tensor] = []
        known: list[torch.Tensor] = []
        for t in range(t_in + n_out - 1):
            lead = t - t_in + 2  # the lead this step forecasts; < 1 on the input steps
            x = inputs[:, t] if t < t_in else frames[-1]
            guide = inputs[:, t] if lead < 1 else prior.frames[:, lead - 1, None]
            flag = torch.full_like(x, max(lead, 0) / self.config.frames_out)
            step_in = to_patches(torch.cat([x, context, guide, flag], dim=1).contiguous(), p)
            if state is None:
                state = self.initial_state(step_in)
            y, state = self.step(step_in, state)
            if lead < 1:
                continue
            correction, source = y[:, :2], from_patches(y[:, 2:], p)
            velocity = F.interpolate(
                correction, scale_factor=p, mode="bilinear", align_corners=False
            )
            displacement = trace_back(displacement, velocity)
            valid = prior.known[:, lead - 1, None].to(inputs.dtype)
            valid = sample(valid, displacement.detach()) >= KNOWN
            moved = sample(guide, displacement) + source
            frames.append(_match_where(moved, guide, valid))
            corrections.append(correction)
            known.append(valid.to(inputs.dtype))
        return Prediction(
            torch.stack(frames, dim=1),
            torch.stack(corrections, dim=1),
            torch.stack(known, dim=1),
            start=t_in,
        )

    @torch.inference_mode()
    def generate(
        self,
        inputs: torch.Tensor,
        n_out: int | None = None,
        coverage: torch.Tensor | None = None,
        motion: torch.Tensor | None = None,
        seen: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Forecast (B, n_out, c, H, W) from inputs (B, T_in, c, H, W); n_out: config.frames_out."""
        n_out = self.config.frames_out if n_out is None else n_out
        out = self(inputs, n_out, coverage=coverage, motion=motion, seen=seen)
        return out.frames[:, inputs.shape[1] - out.start :]


def _match_where(field: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """field (B, 1, H, W) matched to the distribution of target over the cells of ``valid``;
    elsewhere the field's value stays (it is unknown)."""
    b = field.shape[0]
    below = torch.minimum(field.detach().amin(), target.detach().amin()) - 1.0
    f = torch.where(valid, field, below).view(b, -1)
    g = torch.where(valid, target, below).view(b, -1)
    return torch.where(valid, match_distribution(f, g).view_as(field), field)


# ---- checkpoints ---------------------------------------------------------------------------------
CONFIG_KEY = "motionrnn_config"
RESERVED_KEYS = frozenset({CONFIG_KEY, "format"})


def save_checkpoint(
    path: str | os.PathLike[str], model: MotionRNN, extra_metadata: dict[str, str] | None = None
) -> None:
    """Write the model's weights and config (plus string metadata) atomically to ``path``."""
    extra = dict(extra_metadata or {})
    clash = RESERVED_KEYS & set(extra)
    if clash:
        raise ValueError(f"reserved metadata keys: {sorted(clash)}")
    if not all(isinstance(v, str) for v in extra.values()):
        raise TypeError("metadata values must be strings")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", CONFIG_KEY: model.config.to_json(), **extra}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> MotionRNN:
    """Rebuild the model from its config and load its weights (strictly) onto ``map_location``."""
    with safe_open(os.fspath(path), framework="pt", device=str(map_location)) as f:
        config = MotionRNNConfig.from_json(f.metadata()[CONFIG_KEY])
        state = {key: f.get_tensor(key) for key in f.keys()}
    model = MotionRNN(config).to(map_location)
    model.load_state_dict(state, strict=True)
    return model


def checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The extra metadata stored with ``save_checkpoint`` (config and format keys left out)."""
    with safe_open(os.fspath(path), framework="pt") as f:
        metadata = f.metadata() or {}
    return {k: v for k, v in metadata.items() if k not in RESERVED_KEYS}
