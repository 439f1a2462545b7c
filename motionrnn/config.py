"""The model configuration: one frozen dataclass, serialisable as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Literal

Base = Literal["predrnn", "convlstm"]
BASES: tuple[str, ...] = ("predrnn", "convlstm")
Output = Literal["frame", "advective", "sprog"]
OUTPUTS: tuple[str, ...] = ("frame", "advective", "sprog")
CONTEXT_CHANNELS = 3  # coverage, and the motion prior's x and y
PriorPart = Literal["gains", "blend", "trend"]  # what the sprog prior learns (prior.PARTS)
PRIOR_CHANNELS = 2  # sprog: the prior frame at the step's target lead, and the lead


@dataclass(frozen=True)
class MotionRNNConfig:
    """Hyper-parameters of a MotionRNN (or of its plain base when ``motion`` is False).

    The defaults are the light radar configuration: PredRNN 2 x 32, filter 3, patch 4, one channel
    of rain rate, 6 frames in and 12 out, chosen so that a forecast costs about as much as pysteps'
    extrapolation nowcast on CPU (bench/model.py), with the advective output and the context
    inputs (see ``motionrnn.model``). ``MotionRNNConfig.reference()`` is the official Human3.6M
    recipe (4 x 64, filter 5, frames out directly, no context).
    """

    base: Base = "predrnn"  # stacked recurrent cell: spatiotemporal LSTM or ConvLSTM
    motion: bool = True  # MotionGRU between layers + Motion Highway; False: the plain base
    layers: int = 2  # L stacked cells, L - 1 MotionGRUs between them
    hidden: int = 32  # C, channels of every cell's state (divisible by 4: MotionGRU uses C/4)
    filter_size: int = 3  # kernel of the cell, encoder and fusion-gate convolutions (odd)
    patch: int = 4  # space-to-depth factor: a (c, H, W) frame becomes (c p^2, H/p, W/p)
    channels: int = 1  # channels of a frame
    frames_in: int = 6  # observed frames the model conditions on (training and serving)
    frames_out: int = 12  # frames it forecasts
    alpha: float = 0.5  # step of the motion trend: D_t = D_{t-1} + alpha (F_{t-1} - D_{t-1})
    neighbours: int = 3  # side k of the sampling neighbourhood: k^2 offsets per point (odd)
    forget_bias: float = 1.0  # constant added to the forget-gate pre-activations
    output: Output = "sprog"  # sprog: S-PROG prior, refined; advective: the last frame advected,
    # with motion and source learned; frame: the next frame directly (the paper)
    context: bool = True  # coverage and the motion prior as input channels at every step
    motion_scale: float = 4.0  # pixels per step that the motion channels are divided by
    # the sprog output's prior (motionrnn.prior), on the model's scale (the training
    # configuration sets these from its rain transform)
    sprog_levels: int = 6  # cascade levels (pysteps' default)
    wet_level: float = 5.0 / 38.0  # rain: 0.1 mm/h with pysteps' dB, -15 dB dry, 23 dB at 1
    heavy_level: float = 25.0 / 38.0  # heavy rain, where the prior blends in extrapolation: 10 mm/h
    heavy_width: float = 2.0 / 38.0  # width of that step: 2 dB

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {self.base!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.output == "sprog" and not (self.context and self.frames_in >= 3):
            raise ValueError("the sprog output needs context and at least 3 input frames")
        if self.motion_scale <= 0:
            raise ValueError(f"motion_scale must be > 0, got {self.motion_scale}")
        for name in ("layers", "hidden", "filter_size", "patch", "channels", "frames_in"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.frames_out < 0:
            raise ValueError(f"frames_out must be >= 0, got {self.frames_out}")
        if self.filter_size % 2 == 0 or self.neighbours % 2 == 0:
            raise ValueError("filter_size and neighbours must be odd")
        if self.motion and self.hidden % 4:
            raise ValueError(f"hidden must be divisible by 4 with motion, got {self.hidden}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")

    @classmethod
    def reference(cls) -> MotionRNNConfig:
        """The official recipe (Human3.6M): PredRNN 4 x 64, filter 5, patch 4, RGB, 4 -> 4."""
        return cls(
            base="predrnn",
            motion=True,
            layers=4,
            hidden=64,
            filter_size=5,
            patch=4,
            channels=3,
            frames_in=4,
            frames_out=4,
            output="frame",
            context=False,
        )

    @property
    def patch_channels(self) -> int:
        """Channels of a patched frame, c p^2."""
        return self.channels * self.patch**2

    @property
    def input_channels(self) -> int:
        """Channels of a patched step input: the frame and, with context, coverage and motion
        (and with the sprog output the prior frame at the target lead and the lead)."""
        context = (CONTEXT_CHANNELS if self.context else 0) + (
            PRIOR_CHANNELS if self.output == "sprog" else 0
        )
        return (self.channels + context) * self.patch**2

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MotionRNNConfig:
        """The config of ``to_json``; one written before ``output`` existed is a frame model
        without context (what every model was then)."""
        values = json.loads(text)
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        if "output" not in values:
            values.update(output="frame", context=False)
        return cls(**values)
