"""Polar gates onto a Cartesian grid, with the interpolation index cached per scan geometry.

The first volume of a radar pays for a KD-tree search; every later volume with the same geometry
(site, elevation, azimuths, gates, target grid, method) is a gather. Methods: ``nearest`` (the
nearest gate) and ``idw`` (inverse-distance weighting of the k nearest gates).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy.spatial import cKDTree

from pipelines.grid import Grid
from pipelines.radar.beam import gate_positions

Method = Literal["nearest", "idw"]


@dataclass(frozen=True)
class ScanGeometry:
    """Everything that fixes where a sweep's gates fall; hashable, so it keys the cache."""

    lat: float
    lon: float
    altitude_m: float
    elevation_deg: float
    azimuth_deg: tuple[float, ...]  # ray centres, 0.01 degree
    range_start_m: float  # first gate centre
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
        return cls(
            round(float(lat), 6),
            round(float(lon), 6),
            round(float(altitude_m), 1),
            round(float(elevation_deg), 3),
            tuple(np.round(np.asarray(azimuth_deg, dtype=np.float64), 2).tolist()),
            float(range_m[0]),
            float(range_m[1] - range_m[0]) if len(range_m) > 1 else 1.0,
            len(range_m),
        )

    @property
    def range_m(self) -> np.ndarray:
        return self.range_start_m + np.arange(self.n_gates) * self.gate_m

    def gates(self, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, y in the grid's CRS and beam height of every gate, each (n_rays, n_gates)."""
        return gate_positions(
            self.lat,
            self.lon,
            self.altitude_m,
            np.array(self.azimuth_deg),
            self.range_m,
            self.elevation_deg,
            grid.crs,
        )


@dataclass(frozen=True)
class GridIndex:
    """Per grid cell, the flat indices of the gates that make its value and their weights."""

    gate: np.ndarray  # (n_cells, k) int64, -1 = no gate
    weight: np.ndarray  # (n_cells, k) float32, 0 where gate is -1

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Weighted mean over the finite gates of each cell; NaN where none is finite."""
        flat = np.asarray(values, dtype=np.float32).ravel()
        picked = np.where(self.gate >= 0, flat[np.maximum(self.gate, 0)], np.nan)
        if picked.shape[1] == 1:
            return picked[:, 0]
        finite = np.isfinite(picked)
        w = np.where(finite, self.weight, 0.0)
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (np.where(finite, picked, 0.0) * w).sum(axis=1) / total
        return np.where(total > 0, out, np.nan).astype(np.float32)


@lru_cache(maxsize=128)
def grid_index(
    geometry: ScanGeometry,
    grid: Grid,
    max_range_m: float,
    method: Method = "nearest",
    neighbours: int = 4,
    power: float = 2.0,
) -> GridIndex:
    x, y, _ = geometry.gates(grid)
    tree = cKDTree(np.column_stack([x.ravel(), y.ravel()]))
    xx, yy = np.meshgrid(grid.x, grid.y)
    # a gate serves a cell when it lies within a gate, a beam width or a cell diagonal
    azimuth = np.sort(np.array(geometry.azimuth_deg))
    beam_gap = (
        float(np.deg2rad(np.median(np.diff(azimuth))) * max_range_m) if len(azimuth) > 1 else 0
    )
    reach = max(geometry.gate_m, beam_gap, grid.dx * np.sqrt(2))
    k = 1 if method == "nearest" else neighbours
    dist, idx = tree.query(
        np.column_stack([xx.ravel(), yy.ravel()]), k=k, distance_upper_bound=reach
    )
    dist, idx = dist.reshape(-1, k), idx.reshape(-1, k)
    site_x, site_y, _ = gate_positions(
        geometry.lat, geometry.lon, geometry.altitude_m, np.zeros(1), np.zeros(1), 0.0, grid.crs
    )
    in_range = np.hypot(xx - site_x[0, 0], yy - site_y[0, 0]).ravel() <= max_range_m
    found = np.isfinite(dist) & in_range[:, None]
    weight = np.where(found, 1.0 / np.maximum(dist, 1.0) ** power, 0.0) if k > 1 else found * 1.0
    return GridIndex(
        gate=np.where(found, idx, -1).astype(np.int64), weight=weight.astype(np.float32)
    )


def grid_sweep(
    values: np.ndarray,
    geometry: ScanGeometry,
    grid: Grid,
    max_range_m: float,
    method: Method = "nearest",
    neighbours: int = 4,
    power: float = 2.0,
) -> np.ndarray:
    """A sweep's gate values (n_rays, n_gates) on ``grid``; NaN where no gate reaches."""
    index = grid_index(geometry, grid, max_range_m, method, neighbours, power)
    return index.gather(values).reshape(grid.shape)
