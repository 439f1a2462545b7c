"""What a forecast is made with: the promoted MotionRNN or a pysteps method, one interface.

    forecaster = get_forecaster("motionrnn", registry="data/registry")   # or a baseline's name
    values = forecaster.nowcast(frames, n_out, velocity)   # (T, H, W) mm/h -> (n_out, H, W)

``velocity`` is the motion prior of the input frames (``pipelines.motion_prior``), in the
forecaster's own transform (``Forecaster.transform``: a model's is the one it was trained with).
NaN marks unknown cells in and out; no method lets unknown count as dry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import baselines
from pipelines.baselines import Nowcast
from pipelines.config import TransformConfig

log = logging.getLogger(__name__)

MODEL = "motionrnn"


class NoModelError(RuntimeError):
    """No model to forecast with (no registry, nothing promoted); the message says which."""


@dataclass(frozen=True)
class Forecaster:
    name: str  # what the store records as the method
    nowcast: Nowcast
    transform: TransformConfig  # the dB transform of the motion prior
    frames_in: int  # input frames it reads (the last ones given)
    version: str = ""  # the model's registry version; '' for the pysteps methods


class ModelNowcast:
    """A MotionRNN as a nowcast: whole domains of any size (padded with unknown cells to a
    multiple of the patch), values advected from unknown cells NaN (``Prediction.known``)."""

    def __init__(self, model, transform: TransformConfig, compile_step: bool = False):
        import torch

        from pipelines.training.transform import RainTransform

        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.scale = RainTransform(transform)
        self.patch = model.config.patch
        if compile_step:  # one graph per time step: 1.2-1.4 x faster after a ~12 s first call
            model.step = torch.compile(model.step)

    def __call__(self, frames: np.ndarray, n_out: int, velocity: np.ndarray) -> np.ndarray:
        return self.batch([(frames, velocity)], n_out)[0]

    def batch(self, items: Sequence[tuple[np.ndarray, np.ndarray]], n_out: int) -> list[np.ndarray]:
        """Several forecasts of one grid size in one model call: [(frames, velocity)] ->
        [(n_out, H, W) mm/h]."""
        import torch

        from motionrnn import KNOWN

        t_in = self.model.config.frames_in
        height, width = items[0][0].shape[-2:]
        pad_y, pad_x = -height % self.patch, -width % self.patch
        rates = np.stack([np.asarray(f[-t_in:], dtype=np.float32) for f, _ in items])
        rates = np.pad(rates, ((0, 0), (0, 0), (0, pad_y), (0, pad_x)), constant_values=np.nan)
        motion = np.stack([np.asarray(v, dtype=np.float32) for _, v in items])
        motion = np.pad(motion, ((0, 0), (0, 0), (0, pad_y), (0, pad_x)))
        scaled = self.scale.forward(rates)  # (B, T, H', W'), NaN unknown
        seen = np.isfinite(scaled)

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

        with torch.inference_mode():
            out = self.model(
                tensor(np.nan_to_num(scaled, nan=0.0))[:, :, None],
                n_out,
                coverage=tensor(seen[:, -1:].astype(np.float32)),
                motion=tensor(motion),
            )
        frames = out.frames[:, t_in - 1 :, 0].float().clamp(0.0, 1.0).cpu().numpy()
        values = self.scale.inverse(frames)
        if out.known is not None:
            known = out.known[:, t_in - 1 :, 0].float().cpu().numpy()
            values = np.where(known >= KNOWN, values, np.nan)
        return [v[:, :height, :width].astype(np.float32) for v in values]


def load_model(registry: str | Path, device: str | None = None, compile_step: bool = False):
    """The promoted model of ``registry`` as (ModelNowcast, version, transform, frames_in)."""
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
        raise NoModelError(f"{registry}: no model is promoted (motioncast models promote VERSION)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_checkpoint(version.checkpoint, map_location=device)
    transform = TransformConfig.model_validate(version.card["training"]["data"]["transform"])
    log.info("loaded model %s from %s on %s", version.version, registry, device)
    return ModelNowcast(model, transform, compile_step), version.version, transform


def get_forecaster(
    name: str,
    registry: str | Path | None = None,
    transform: TransformConfig | None = None,
    frames_in: int = 6,
    device: str | None = None,
    compile_step: bool = False,
) -> Forecaster:
    """The forecaster called ``name``: 'motionrnn' (the registry's promoted model) or a pysteps
    method ('sprog', 'extrapolation', 'persistence', which read ``frames_in`` frames and take
    the motion prior in ``transform``)."""
    if name == MODEL:
        if registry is None:
            raise NoModelError("motionrnn needs a model registry (--registry)")
        nowcast, version, model_transform = load_model(registry, device, compile_step)
        return Forecaster(MODEL, nowcast, model_transform, nowcast.model.config.frames_in, version)
    return Forecaster(name, baselines.get_method(name), transform or TransformConfig(), frames_in)
