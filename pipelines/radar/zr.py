"""Reflectivity <-> rain rate through a Z-R power law, and accumulations to rates."""

from __future__ import annotations

import numpy as np

from pipelines.config import ZRConfig


def dbz_to_rainrate(dbz: np.ndarray, zr: ZRConfig) -> np.ndarray:
    """Rain rate (mm/h) from reflectivity (dBZ): R = (Z / a)^(1/b); dry below ``zr.min_dbz``.

    NaN (unknown) stays NaN.
    """
    dbz = np.asarray(dbz, dtype=np.float64)
    rate = (10.0 ** (dbz / 10.0) / zr.a) ** (1.0 / zr.b)
    rate = np.where(dbz < zr.min_dbz, 0.0, rate)
    return rate.astype(np.float32)


def rainrate_to_dbz(rate: np.ndarray, zr: ZRConfig) -> np.ndarray:
    """Reflectivity (dBZ) of a rain rate (mm/h); -inf for 0."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(zr.a * np.asarray(rate, dtype=np.float64) ** zr.b)


def accumulation_to_rate(depth_mm: np.ndarray, minutes: float) -> np.ndarray:
    """Mean rain rate (mm/h) of a ``minutes``-long accumulation (mm)."""
    if not minutes > 0:
        raise ValueError(f"accumulation time must be positive, got {minutes}")
    rate = np.array(depth_mm, dtype=np.float32)  # a copy: the caller's array stays as it was
    rate *= np.float32(60.0 / minutes)
    return rate
