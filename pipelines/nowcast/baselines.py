"""The pysteps nowcasts a model must beat, as functions of the frames and the motion prior:

    forecast = extrapolation(frames, n_out, velocity)   # (T_in, H, W) -> (n_out, H, W) mm/h

``velocity`` is the motion prior (``pipelines.nowcast.motion.motion_field``). NaN marks unknown
cells in and out, and no method lets unknown count as dry: a cell whose value would come from an
unknown cell is NaN. ``PystepsNowcaster`` puts each behind the family's interface
(``pipelines.nowcast``).

- ``persistence``: the last observed frame at every lead (Eulerian persistence).
- ``extrapolation``: semi-Lagrangian advection of the last frame along the motion (Lagrangian
  persistence), the usual operational yardstick.
- ``sprog``: pysteps' S-PROG (Seed 2003): a cascade of scales, each advected and evolved by an
  AR(2) process, the small scales fading first; NaN where the extrapolation of the coverage is
  unknown (S-PROG itself fills unknown inputs with the field's minimum).
- ``linda``: pysteps' LINDA (Pulkkinen et al. 2021), deterministic (no perturbations): rain
  cells found as features, each with its own growth and decay, advected; the skill anchor above
  S-PROG, at about 3 minutes a forecast on a 700 x 700 domain on two cores, so not among the
  methods every validation scores (``VALIDATION``). It needs scikit-image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipelines.config import TransformConfig
from pipelines.nowcast.motion import motion_field, to_db

log = logging.getLogger(__name__)

VelocityNowcast = Callable[[np.ndarray, int, np.ndarray], np.ndarray]

SPROG_CASCADE_LEVELS = 6  # pysteps' default (its issue #385)
SPROG_AR_ORDER = 2


def persistence(frames: np.ndarray, n_out: int, velocity: np.ndarray) -> np.ndarray:
    """The last observed frame, unchanged, at every lead."""
    return np.repeat(np.asarray(frames, dtype=np.float32)[-1:], n_out, axis=0)


def extrapolation(frames: np.ndarray, n_out: int, velocity: np.ndarray) -> np.ndarray:
    """The last frame advected along ``velocity`` (cells per step), NaN from unknown cells."""
    from pipelines.radar.pysteps_io import extrapolation as advection

    forecast = advection.semilagrangian.extrapolate(
        np.asarray(frames[-1], dtype=np.float64), velocity, n_out, allow_nonfinite_values=True
    )
    return forecast.astype(np.float32)


def sprog(
    frames: np.ndarray, n_out: int, velocity: np.ndarray, transform: TransformConfig | None = None
) -> np.ndarray:
    """pysteps' S-PROG nowcast in dB from the last three frames, back in mm/h."""
    from pipelines.radar.pysteps_io import nowcasts, quiet

    transform = transform or TransformConfig()
    frames = np.asarray(frames, dtype=np.float64)
    known = extrapolation(np.isfinite(frames).astype(np.float64), n_out, velocity)
    unknown = ~(known > 1.0 - 1e-6)  # touched by an unknown cell or from outside the domain
    db = to_db(frames[-(SPROG_AR_ORDER + 1) :], transform)
    if not np.any(np.nan_to_num(db, nan=transform.zerovalue_db) > transform.zerovalue_db):
        forecast = np.zeros((n_out, *frames.shape[1:]))
    else:
        threshold_db = 10.0 * np.log10(transform.threshold_mm_h)
        try:
            with quiet():
                forecast_db = nowcasts.get_method("sprog")(
                    db,
                    velocity,
                    n_out,
                    precip_thr=threshold_db,
                    n_cascade_levels=SPROG_CASCADE_LEVELS,
                    ar_order=SPROG_AR_ORDER,
                )
            forecast = 10.0 ** (forecast_db / 10.0)
            forecast[forecast < transform.threshold_mm_h] = 0.0
        except (np.linalg.LinAlgError, ValueError) as exc:
            # a field that moves without changing makes every scale perfectly correlated (a
            # singular AR fit), a uniform one leaves scales without variance (NaN correlations):
            # S-PROG's limit there is the extrapolation
            log.warning("S-PROG: %s (a field without structure or change); extrapolating", exc)
            forecast = extrapolation(frames, n_out, velocity)
    forecast = np.where(unknown | ~np.isfinite(forecast), np.nan, forecast)
    return forecast.astype(np.float32)


def linda(frames: np.ndarray, n_out: int, velocity: np.ndarray) -> np.ndarray:
    """pysteps' deterministic LINDA nowcast from the last three frames (mm/h), NaN where the
    extrapolation of the coverage is unknown."""
    from pipelines.radar.pysteps_io import nowcasts, quiet

    frames = np.asarray(frames, dtype=np.float64)
    known = extrapolation(np.isfinite(frames).astype(np.float64), n_out, velocity)
    with quiet():
        forecast = nowcasts.get_method("linda")(
            frames[-3:], velocity, n_out, add_perturbations=False, num_workers=2
        )
    forecast = np.where(~(known > 1.0 - 1e-6) | ~np.isfinite(forecast), np.nan, forecast)
    return forecast.astype(np.float32)


FUNCTIONS: dict[str, VelocityNowcast] = {
    "persistence": persistence,
    "extrapolation": extrapolation,
    "sprog": sprog,
    "linda": linda,
}


@dataclass(frozen=True)
class PystepsNowcaster:
    """A pysteps method as a nowcaster: on ``velocity`` when given, else on the motion prior
    of the frames in ``transform``'s dB (S-PROG's own cascade in the default transform, as
    validation runs it); the version it returns is ''."""

    name: str
    transform: TransformConfig = field(default_factory=TransformConfig)

    def __call__(
        self, frames: np.ndarray, n_out: int, velocity: np.ndarray | None = None
    ) -> tuple[np.ndarray, str]:
        if velocity is None:
            velocity = motion_field(frames, self.transform)
        return FUNCTIONS[self.name](frames, n_out, velocity), ""
