"""Reference nowcasts that a model must beat, one interface (pysteps' habit):

    nowcast = get_method("extrapolation")
    forecast = nowcast(frames, n_out)     # (T_in, H, W) mm/h -> (n_out, H, W) mm/h

NaN marks unknown cells in and out. ``persistence`` repeats the last frame (Eulerian
persistence); ``extrapolation`` is pysteps' Lucas-Kanade motion on the dB-transformed last
``motion_frames`` frames and semi-Lagrangian advection of the last frame (Lagrangian
persistence), the usual operational yardstick.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipelines.config import TransformConfig

Nowcast = Callable[[np.ndarray, int], np.ndarray]

MOTION_FRAMES = 4  # pysteps' examples estimate LK motion on the last few frames


def persistence(frames: np.ndarray, n_out: int) -> np.ndarray:
    """The last observed frame, unchanged, at every lead."""
    return np.repeat(np.asarray(frames, dtype=np.float32)[-1:], n_out, axis=0)


def extrapolation(
    frames: np.ndarray,
    n_out: int,
    motion_frames: int = MOTION_FRAMES,
    transform: TransformConfig | None = None,
) -> np.ndarray:
    """The last frame advected along the Lucas-Kanade motion of the last ``motion_frames``
    (estimated in dB with ``transform``'s threshold and zero value, default pysteps')."""
    from pipelines.radar.pysteps_io import extrapolation as advection
    from pipelines.radar.pysteps_io import motion, transformation

    transform = transform or TransformConfig()
    frames = np.asarray(frames, dtype=np.float64)
    db, _ = transformation.dB_transform(
        frames[-motion_frames:],
        threshold=transform.threshold_mm_h,
        zerovalue=transform.zerovalue_db,
    )
    db[~np.isfinite(db)] = transform.zerovalue_db
    if np.all(db == transform.zerovalue_db):  # nothing to track: the motion is unknown, take 0
        velocity = np.zeros((2, *frames.shape[1:]))
    else:
        velocity = motion.get_method("LK")(db, verbose=False)
    forecast = advection.semilagrangian.extrapolate(
        frames[-1], velocity, n_out, allow_nonfinite_values=True
    )
    return forecast.astype(np.float32)


_METHODS: dict[str, Nowcast] = {"persistence": persistence, "extrapolation": extrapolation}


def get_method(name: str) -> Nowcast:
    """A baseline nowcast by name: 'persistence' or 'extrapolation'."""
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(_METHODS)}") from None


def names() -> list[str]:
    return list(_METHODS)
