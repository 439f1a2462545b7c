"""Rain-rate products of a polar volume on a grid.

- ``lowest``: the lowest sweep (a pseudo-CAPPI at each gate's own beam height).
- ``cappi``: at every cell, the sweep whose beam centre (4/3 Earth radius) is closest to the
  configured height; where that sweep has no value the next closest is used.
Reflectivity becomes rain rate through the configured Z-R relation before gridding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.config import MotioncastConfig
from pipelines.grid import Grid
from pipelines.radar.beam import beam_height_and_ground_range
from pipelines.radar.decoded import Decoded
from pipelines.radar.errors import BadInputError
from pipelines.radar.gridding import grid_sweep
from pipelines.radar.polar import PolarSweep, PolarVolume
from pipelines.radar.zr import dbz_to_rainrate

SLOT = pd.Timedelta(minutes=5)


def _scan_times(sweeps: list[PolarSweep]) -> str:
    return "; ".join(
        f"{s.geometry.elevation_deg:g} deg {s.start:%Y-%m-%dT%H:%M:%S}/{s.end:%H:%M:%S}"
        for s in sweeps
    )


def polar_product(volume: PolarVolume, cfg: MotioncastConfig, fmt: str, path: Path) -> Decoded:
    polar = cfg.ingest.polar
    slot = volume.nominal.round(SLOT)
    if abs(volume.nominal - slot) > pd.Timedelta(minutes=polar.slot_tolerance_minutes):
        raise BadInputError(
            path,
            f"nominal time {volume.nominal} is more than {polar.slot_tolerance_minutes:g} "
            f"min from the slot {slot:%H:%M} (ingest.polar.slot_tolerance_minutes)",
        )
    max_range = polar.max_range_km * 1000.0
    gridding = {
        "method": polar.interpolation,
        "neighbours": polar.idw_neighbours,
        "power": polar.idw_power,
    }
    used = volume.sweeps[:1] if polar.product == "lowest" else volume.sweeps
    rates = [dbz_to_rainrate(s.dbz(), cfg.zr) for s in used]  # only the sweeps used are read

    def on_grid(sweep: PolarSweep, values: np.ndarray, grid: Grid) -> np.ndarray:
        return grid_sweep(values, sweep.geometry, grid, max_range, **gridding)

    def lowest(grid: Grid) -> np.ndarray:
        return on_grid(used[0], rates[0], grid)

    def cappi(grid: Grid) -> np.ndarray:
        values = np.stack([on_grid(s, r, grid) for s, r in zip(used, rates, strict=True)])
        heights = np.stack(
            [
                on_grid(
                    s,
                    np.broadcast_to(
                        beam_height_and_ground_range(
                            s.geometry.range_m, s.geometry.elevation_deg, volume.altitude_m
                        )[0],
                        r.shape,
                    ),
                    grid,
                )
                for s, r in zip(used, rates, strict=True)
            ]
        )
        misfit = np.where(np.isfinite(values), np.abs(heights - polar.cappi_height_m), np.inf)
        best = np.argmin(misfit, axis=0)
        out = np.take_along_axis(values, best[None], axis=0)[0]
        return np.where(np.isfinite(misfit.min(axis=0)), out, np.nan).astype(np.float32)

    if polar.product == "lowest":
        name = f"lowest sweep {used[0].geometry.elevation_deg:g} deg DBZH"
    else:
        name = f"CAPPI {polar.cappi_height_m:g} m DBZH"
    site_grid = Grid.centred_on(
        volume.lat, volume.lon, polar.site_domain_size_km * 1000.0, polar.site_domain_resolution_m
    )
    return Decoded(
        source=volume.node,
        time=slot,
        grid=site_grid,
        centre_lonlat=(volume.lon, volume.lat),
        product=f"{name}, {polar.interpolation}, Z={cfg.zr.a:g}R^{cfg.zr.b:g} ({fmt})",
        to_grid=lowest if polar.product == "lowest" else cappi,
        radars=volume.node,
        scan_times=_scan_times(used),
        site_lonlat=(volume.lon, volume.lat),
    )
