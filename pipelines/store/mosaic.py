"""Merging several radars' frames of one slot into a mosaic frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipelines.grid import Grid

Method = Literal["max", "distance_weighted"]


@dataclass(frozen=True)
class MosaicSpec:
    """A configured domain's mosaic policy."""

    radars: tuple[str, ...] = ()  # expected radars; empty: whichever arrive
    method: Method = "max"
    deadline_minutes: float = 10.0


def merge(
    fields: list[np.ndarray], sites_lonlat: list[tuple[float, float]], grid: Grid, method: Method
) -> np.ndarray:
    """One field from several radars' fields on ``grid``: NaN only where no radar sees.

    ``max`` takes the largest rate per cell; ``distance_weighted`` averages with weights
    1/d^2, d the distance from each radar, so values blend without a seam where radars overlap.
    """
    stack = np.stack(fields).astype(np.float32)  # (n_radars, ny, nx)
    seen = np.isfinite(stack)
    if method == "max":
        out = np.where(seen, stack, -np.inf).max(axis=0)
        return np.where(seen.any(axis=0), out, np.nan).astype(np.float32)
    xx, yy = np.meshgrid(grid.x, grid.y)
    weights = []
    for lon, lat in sites_lonlat:
        sx, sy = grid.xy_of(lon, lat)
        weights.append(1.0 / np.maximum((xx - sx) ** 2 + (yy - sy) ** 2, grid.dx**2))
    w = np.where(seen, np.stack(weights), 0.0)
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (np.where(seen, stack, 0.0) * w).sum(axis=0) / total
    return np.where(total > 0, out, np.nan).astype(np.float32)
