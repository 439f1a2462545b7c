"""Nowcast methods, one family with one interface (pysteps' habit):

    nowcaster = get_method("sprog")                       # or "motionrnn", registry=...
    values, version = nowcaster(frames, n_out)            # (T, H, W) mm/h -> (n_out, H, W) mm/h
    values, _ = nowcaster(frames, n_out, velocity)        # on a motion prior computed once

Every method takes the input frames in mm/h (NaN where unknown, outside radar coverage), the
number of leads, and optionally the motion prior (``motion.motion_field``: validation and
verification compute it once and share it); without one, a method computes it itself in its
own dB transform (a model's is the one it was trained with). It returns the forecast in mm/h,
NaN where its value would come from an unknown cell (unknown never counts as dry), and the
model version that made it ('' for the pysteps methods). ``name`` is what a store records.

- ``persistence``, ``extrapolation``, ``sprog``, ``linda``: pysteps (``baselines``);
- ``motionrnn``: the registry's promoted MotionRNN (``model.ModelNowcaster``).

``from_config(name, cfg)`` is ``get_method`` as the configuration has it, the way the forecast
verb, the cycle and the service make their nowcasters.

The family also holds what every method and the model's training share: the motion prior
(``motion``) and the rain-rate transform of the model's scale (``transform``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from pipelines.config import MotioncastConfig, TransformConfig
from pipelines.nowcast.model import MODEL, NoModelError, Precision

PYSTEPS = ("persistence", "extrapolation", "sprog", "linda")
VALIDATION = ("persistence", "extrapolation", "sprog")  # what every validation scores
__all__ = [
    "MODEL",
    "PYSTEPS",
    "VALIDATION",
    "NoModelError",
    "Nowcaster",
    "from_config",
    "get_method",
    "transform_of",
]


class Nowcaster(Protocol):
    name: str  # what the store records as the method

    def __call__(
        self, frames: np.ndarray, n_out: int, velocity: np.ndarray | None = None
    ) -> tuple[np.ndarray, str]: ...


def get_method(
    name: str,
    registry: str | Path | None = None,
    transform: TransformConfig | None = None,
    *,
    device: str | None = None,
    compile_step: bool = False,
    precision: Precision = "float32",
) -> Nowcaster:
    """The nowcaster called ``name``: 'motionrnn' (the promoted model of ``registry``, on
    ``device``, default CUDA when there is one) or a pysteps method (on the motion prior in
    ``transform``)."""
    if name == MODEL:
        from pipelines.nowcast.model import ModelNowcaster

        if registry is None:
            raise NoModelError("motionrnn needs a model registry (--registry)")
        return ModelNowcaster.from_registry(registry, device, compile_step, precision)
    if name not in PYSTEPS:
        known = ", ".join((MODEL, *PYSTEPS))
        raise ValueError(f"unknown baseline {name!r}; the methods: {known}")
    from pipelines.nowcast.baselines import PystepsNowcaster

    return PystepsNowcaster(name, transform or TransformConfig())


def transform_of(cfg: MotioncastConfig) -> TransformConfig:
    """The methods' rain transform: the one the model is trained in (``training.data.transform``),
    so that the pysteps methods see the dB field and motion prior the model sees."""
    return cfg.training.data.transform


def from_config(name: str, cfg: MotioncastConfig, **options) -> Nowcaster:
    """``get_method(name)`` as ``cfg`` has it: the model of ``forecast.registry`` in
    ``forecast.precision``, the pysteps methods in ``transform_of(cfg)``; ``options``:
    ``get_method``'s model options (device, compile_step) beside those."""
    f = cfg.forecast
    precision = options.pop("precision", f.precision)
    return get_method(name, f.registry, transform_of(cfg), precision=precision, **options)
