"""The registered MotionRNN as a nowcaster (``pipelines.nowcast``): whole domains of any size.

nowcaster = ModelNowcaster.from_registry("data/registry")   # the promoted version
values, version = nowcaster(frames, n_out)   # (T, H, W) mm/h -> (n_out, H, W) mm/h
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from pipelines.config import TransformConfig
from pipelines.nowcast.motion import motion_field

log = logging.getLogger(__name__)

MODEL = "motionrnn"
Precision = Literal["float32", "bfloat16"]


class NoModelError(RuntimeError):
    """No model to forecast with (no registry, nothing promoted); the message says which."""


class ModelNowcaster:
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

        from pipelines.nowcast.transform import RainTransform

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
    ) -> ModelNowcaster:
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

    def __call__(
        self, frames: np.ndarray, n_out: int, velocity: np.ndarray | None = None
    ) -> tuple[np.ndarray, str]:
        motion = None if velocity is None else [velocity]
        return self.batch([frames], n_out, motion)[0], self.version

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

    def batch(
        self,
        frames: Sequence[np.ndarray],
        n_out: int,
        velocities: Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Several forecasts of one grid size in one model call: [(T, H, W)] -> [(n_out, H, W)]
        mm/h; each from its last ``frames_in`` frames, on its motion prior (``velocities``,
        else computed here in the model's own transform)."""
        import torch

        from motionrnn import KNOWN

        t_in, patch = self.frames_in, self.model.config.patch
        if any(len(f) < t_in for f in frames):
            raise ValueError(f"model {self.version} needs {t_in} input frames")
        height, width = frames[0].shape[-2:]
        pad = ((0, 0), (0, 0), (0, -height % patch), (0, -width % patch))
        rates = np.stack([np.asarray(f[-t_in:], dtype=np.float32) for f in frames])
        if velocities is None:
            velocities = [motion_field(r, self.transform) for r in rates]
        motion = np.stack(velocities)
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
