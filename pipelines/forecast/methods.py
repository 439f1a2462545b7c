"""What a forecast is made with: the promoted MotionRNN or a pysteps method, one interface.

    forecaster = get_forecaster("motionrnn", registry="data/registry")   # or a baseline's name
    values, version = forecaster(frames, n_out)   # (T, H, W) mm/h -> (n_out, H, W) mm/h

A forecaster computes the motion prior of the frames itself (``pipelines.motion_prior``, in its
own dB transform: a model's is the one it was trained with) and returns the model version that
made the values ('' for the pysteps methods). NaN marks unknown cells in and out; no method lets
unknown count as dry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from pipelines import baselines
from pipelines.config import TransformConfig
from pipelines.motion_prior import motion_field

log = logging.getLogger(__name__)

MODEL = "motionrnn"
Precision = Literal["float32", "bfloat16"]


class NoModelError(RuntimeError):
    """No model to forecast with (no registry, nothing promoted); the message says which."""


class Forecaster(Protocol):
    name: str  # what the store records as the method

    def __call__(self, frames: np.ndarray, n_out: int) -> tuple[np.ndarray, str]: ...


@dataclass(frozen=True)
class Baseline:
    """A pysteps nowcast (``pipelines.baselines``) on the motion prior of the frames."""

    name: str
    transform: TransformConfig = field(default_factory=TransformConfig)

    def __call__(self, frames: np.ndarray, n_out: int) -> tuple[np.ndarray, str]:
        velocity = motion_field(frames, self.transform)
        return baselines.get_method(self.name)(frames, n_out, velocity), ""


class ModelForecaster:
    """A registered MotionRNN on whole domains of any size (padded with unknown cells to a
    multiple of the patch, cut back), values advected from unknown cells NaN
    (``Prediction.known``)."""

    name = MODEL

    def __init__(
        self,
        model,
        transform: TransformConfig,
        version: str,
        compile_step: bool = False,
        precision: Precision = "float32",
    ):
        import torch

        from pipelines.training.transform import RainTransform

        self.model = model.eval()
        self.precision = precision
        self.version = version
        self.transform = transform
        self.device = next(model.parameters()).device
        self.scale = RainTransform(transform)
        self.frames_in = model.config.frames_in
        if compile_step:  # one graph per time step: 1.2-1.4 x faster after a ~12 s first call
            model.step = torch.compile(model.step)

    @classmethod
    def from_registry(
        cls,
        registry: str | Path,
        device: str | None = None,
        compile_step: bool = False,
        precision: Precision = "float32",
    ) -> ModelForecaster:
        """The promoted version of ``registry`` (on CUDA when there is one)."""
        import torch

        from motionrnn import load_checkpoint
        from pipelines.registry import Registry, RegistryError

        path = Path(registry)
        if not path.is_dir():
            raise NoModelError(f"{registry}: no model registry here")
        try:
            version = Registry(path).promoted()
        except RegistryError as exc:
            raise NoModelError(str(exc)) from None
        if version is None:
            raise NoModelError(f"{registry}: no model is promoted (motioncast models promote V)")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = load_checkpoint(version.checkpoint, map_location=device)
        transform = TransformConfig.model_validate(version.card["training"]["data"]["transform"])
        log.info("loaded model %s from %s on %s", version.version, registry, device)
        return cls(model, transform, version.version, compile_step, precision)

    def __call__(self, frames: np.ndarray, n_out: int) -> tuple[np.ndarray, str]:
        return self.batch([frames], n_out)[0], self.version

    def _prior(self, inputs, known, motion, n_out: int, height: int, width: int):
        """The sprog model's prior on the unpadded grid (as S-PROG runs on the domain itself),
        padded with unknown cells; None for the other outputs."""
        if self.model.prior is None:
            return None
        import torch.nn.functional as F

        from motionrnn.sprog import Sprog

        region = (..., slice(0, height), slice(0, width))
        prior = self.model.prior(
            inputs[:, :, 0][region], known[:, :, 0][region] > 0, motion[region], n_out
        )
        pad = (0, inputs.shape[-1] - width, 0, inputs.shape[-2] - height)
        return Sprog(F.pad(prior.frames, pad), F.pad(prior.known, pad))

    def batch(self, frames: Sequence[np.ndarray], n_out: int) -> list[np.ndarray]:
        """Several forecasts of one grid size in one model call: [(T, H, W)] -> [(n_out, H, W)]
        mm/h; each from its last ``frames_in`` frames."""
        import torch

        from motionrnn import KNOWN

        t_in, patch = self.frames_in, self.model.config.patch
        if any(len(f) < t_in for f in frames):
            raise ValueError(f"model {self.version} needs {t_in} input frames")
        height, width = frames[0].shape[-2:]
        pad = ((0, 0), (0, 0), (0, -height % patch), (0, -width % patch))
        rates = np.stack([np.asarray(f[-t_in:], dtype=np.float32) for f in frames])
        motion = np.stack([motion_field(r, self.transform) for r in rates])
        scaled = self.scale.forward(np.pad(rates, pad, constant_values=np.nan))  # NaN unknown
        seen = np.isfinite(scaled)

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

        inputs = tensor(np.nan_to_num(scaled, nan=0.0))[:, :, None]
        known_in, velocity = tensor(seen)[:, :, None].float(), tensor(np.pad(motion, pad))
        bf16 = self.precision == "bfloat16"
        with torch.inference_mode():
            prior = self._prior(inputs, known_in, velocity, n_out, height, width)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                out = self.model(
                    inputs,
                    n_out,
                    coverage=known_in[:, -1],
                    motion=velocity,
                    seen=known_in,
                    prior=prior,
                )
        lead0 = t_in - out.start
        values = self.scale.inverse(out.frames[:, lead0:, 0].float().clamp(0, 1).cpu().numpy())
        if out.known is not None:
            known = out.known[:, lead0:, 0].float().cpu().numpy()
            values = np.where(known >= KNOWN, values, np.nan)
        return [v[:, :height, :width].astype(np.float32) for v in values]


def get_forecaster(
    name: str,
    registry: str | Path | None = None,
    transform: TransformConfig | None = None,
    *,
    device: str | None = None,
    compile_step: bool = False,
    precision: Precision = "float32",
) -> Forecaster:
    """The forecaster called ``name``: 'motionrnn' (the registry's promoted model) or a pysteps
    method ('sprog', 'extrapolation', 'persistence', on the motion prior in ``transform``)."""
    if name == MODEL:
        if registry is None:
            raise NoModelError("motionrnn needs a model registry (--registry)")
        return ModelForecaster.from_registry(registry, device, compile_step, precision)
    baselines.get_method(name)  # an unknown name fails here, not at the first forecast
    return Baseline(name, transform or TransformConfig())
