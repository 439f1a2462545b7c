"""Polar gates onto a Cartesian grid, with the interpolation index cached per scan geometry.

The first volume of a radar pays for a KD-tree search; every later volume with the same geometry
(site, elevation, azimuths, gates, target grid) is a gather.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

from pipelines.grid import Grid
from pipelines.radar.beam import gate_positions


@dataclass(frozen=True)
class ScanGeometry:
    """Everything that fixes where a sweep's gates fall; hashable, so it keys the cache."""

    lat: float
    lon: float
    altitude_m: float
    elevation_deg: float
    azimuth_key: str  # digest of the ray azimuths
    range_start_m: float
    gate_m: float
    n_gates: int

    @classmethod
    def of(
        cls,
        lat: float,
        lon: float,
        altitude_m: float,
        elevation_deg: float,
        azimuth_deg: np.ndarray,
        range_m: np.ndarray,
    ) -> ScanGeometry:
        rounded = np.round(np.asarray(azimuth_deg, dtype=np.float64), 2)
        return cls(
            round(float(lat), 6),
            round(float(lon), 6),
            round(float(altitude_m), 1),
            round(float(elevation_deg), 3),
            hashlib.sha1(rounded.tobytes()).hexdigest(),
            float(range_m[0]),
            float(range_m[1] - range_m[0]),
            len(range_m),
        )


@dataclass(frozen=True)
class GridIndex:
    """For every grid cell, the flat index of its nearest gate, or -1 where none is in reach."""

    gate: np.ndarray  # (ny * nx,) int64


@lru_cache(maxsize=64)
def nearest_index(
    geometry: ScanGeometry, azimuth_bytes: bytes, grid: Grid, max_range_m: float
) -> GridIndex:
    azimuth = np.frombuffer(azimuth_bytes, dtype=np.float64)
    range_m = geometry.range_start_m + np.arange(geometry.n_gates) * geometry.gate_m
    x, y, _ = gate_positions(
        geometry.lat,
        geometry.lon,
        geometry.altitude_m,
        azimuth,
        range_m,
        geometry.elevation_deg,
        grid.crs,
    )
    tree = cKDTree(np.column_stack([x.ravel(), y.ravel()]))
    xx, yy = np.meshgrid(grid.x, grid.y)
    # a cell takes its nearest gate if that lies within a gate, a beam or a cell diagonal
    beam_gap = float(np.deg2rad(np.median(np.diff(np.sort(azimuth)))) * max_range_m)
    reach = max(geometry.gate_m, beam_gap, grid.dx * np.sqrt(2))
    dist, idx = tree.query(np.column_stack([xx.ravel(), yy.ravel()]), distance_upper_bound=reach)
    site_x, site_y, _ = gate_positions(
        geometry.lat, geometry.lon, geometry.altitude_m, np.zeros(1), np.zeros(1), 0.0, grid.crs
    )
    in_range = np.hypot(xx - site_x[0, 0], yy - site_y[0, 0]).ravel() <= max_range_m
    gate = np.where(np.isfinite(dist) & in_range, idx, -1)
    return GridIndex(gate=gate.astype(np.int64))


def grid_sweep(
    values: np.ndarray,
    geometry: ScanGeometry,
    azimuth_deg: np.ndarray,
    grid: Grid,
    max_range_m: float,
) -> np.ndarray:
    """Nearest-gate values of a sweep (n_rays, n_gates) on ``grid``; NaN where no gate reaches."""
    index = nearest_index(
        geometry, np.asarray(azimuth_deg, dtype=np.float64).tobytes(), grid, max_range_m
    )
    flat = np.asarray(values, dtype=np.float32).ravel()
    out = np.where(index.gate >= 0, flat[np.maximum(index.gate, 0)], np.nan)
    return out.reshape(grid.shape).astype(np.float32)
