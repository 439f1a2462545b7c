"""Polar volumes (ODIM_H5 PVOL/SCAN) through xradar: the lowest sweep as rain rate on a grid.

Undetect (no echo) is dry, 0 mm/h; nodata and gates beyond the configured range are unknown (NaN).
A volume's time is its nominal time rounded to the 5-minute slot.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import xradar

from pipelines.config import MotioncastConfig
from pipelines.grid import Grid
from pipelines.radar.errors import BadInputError
from pipelines.radar.gridding import ScanGeometry, grid_sweep
from pipelines.radar.readers import Decoded, register
from pipelines.radar.zr import dbz_to_rainrate

SLOT = pd.Timedelta(minutes=5)
# sweeps more than this away from the nominal time betray a broken clock or a mixed-up file
SCAN_TIME_TOLERANCE = pd.Timedelta(minutes=15)


def _odim_header(path: Path) -> tuple[str, pd.Timestamp]:
    """(node name, nominal time) from the root /what group."""
    with h5py.File(path, "r") as f:
        what = f["what"].attrs if "what" in f else {}
        source = what.get("source", b"")
        date, time = what.get("date", b""), what.get("time", b"")
        sweeps = [name for name in f if name.startswith("dataset")]
    if not sweeps:
        raise BadInputError(path, "no sweep (dataset group) in the volume")
    text = [
        v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in (source, date, time)
    ]
    fields = dict(item.split(":", 1) for item in text[0].split(",") if ":" in item)
    node = fields.get("NOD") or fields.get("RAD") or fields.get("WMO") or path.stem.split("_")[0]
    try:
        nominal = pd.to_datetime(text[1] + text[2], format="%Y%m%d%H%M%S")
    except ValueError:
        raise BadInputError(path, f"unreadable nominal date/time {text[1]!r} {text[2]!r}") from None
    return node.lower(), nominal


def _lowest_dbzh_sweep(path: Path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = xradar.io.open_odim_datatree(str(path))
    except Exception as exc:
        raise BadInputError(
            path, f"xradar cannot read the volume: {type(exc).__name__}: {exc}"
        ) from None
    sweeps = [tree[name].to_dataset() for name in tree.children if name.startswith("sweep_")]
    sweeps = [s for s in sweeps if "DBZH" in s and s.sizes.get("azimuth", 0) > 0]
    if not sweeps:
        raise BadInputError(path, "no sweep with DBZH rays in the volume")
    lowest = min(sweeps, key=lambda s: float(s["sweep_fixed_angle"]))
    root = tree.ds
    site = (float(root["latitude"]), float(root["longitude"]), float(root["altitude"]))
    return lowest, site


@register("odim_pvol")
def read_odim_volume(path: Path, cfg: MotioncastConfig) -> Decoded:
    node, nominal = _odim_header(path)
    sweep, (lat, lon, alt) = _lowest_dbzh_sweep(path)
    scan_times = pd.DatetimeIndex(sweep["time"].values)
    if len(scan_times) and (abs(scan_times - nominal) > SCAN_TIME_TOLERANCE).any():
        raise BadInputError(
            path,
            f"sweep times {scan_times.min()}..{scan_times.max()} are far from the nominal "
            f"time {nominal}",
        )
    dbzh = sweep["DBZH"]
    dbz = dbzh.values.astype(np.float32)
    enc = dbzh.encoding
    if "_Undetect" in dbzh.attrs:  # xradar decodes undetect to the raw value's dBZ: dry
        undetect = dbzh.attrs["_Undetect"] * enc.get("scale_factor", 1.0) + enc.get(
            "add_offset", 0.0
        )
        dbz = np.where(np.isclose(dbz, undetect), -np.inf, dbz)
    rate = dbz_to_rainrate(dbz, cfg.zr)  # -inf -> 0 (dry), NaN (nodata) stays NaN
    azimuth = sweep["azimuth"].values.astype(np.float64)
    range_m = sweep["range"].values.astype(np.float64)
    elevation = float(sweep["sweep_fixed_angle"])
    geometry = ScanGeometry.of(lat, lon, alt, elevation, azimuth, range_m)
    polar = cfg.ingest.polar

    def to_grid(grid: Grid) -> np.ndarray:
        return grid_sweep(rate, geometry, azimuth, grid, polar.max_range_km * 1000.0)

    site_grid = Grid.centred_on(
        lat, lon, polar.site_domain_size_km * 1000.0, polar.site_domain_resolution_m
    )
    return Decoded(
        source=node,
        time=nominal.round(SLOT),
        grid=site_grid,
        centre_lonlat=(lon, lat),
        product=f"lowest sweep {elevation:g} deg DBZH, Z={cfg.zr.a:g}R^{cfg.zr.b:g}",
        to_grid=to_grid,
        radars=node,
    )
