"""Polar volumes through xradar: ODIM_H5 PVOL/SCAN, NEXRAD Level II (plain or gzip), CfRadial 1.

A volume becomes a rain-rate product on a grid (``products.py``): undetect (no echo) is dry,
0 mm/h; nodata and gates beyond the configured range are unknown (NaN). Its time is the nominal
time rounded to the 5-minute slot; the sweeps' own scan times go to the frame's provenance.
"""

from __future__ import annotations

import gzip
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import xradar

from pipelines.config import MotioncastConfig
from pipelines.radar.attributes import attr_text
from pipelines.radar.decoded import Decoded
from pipelines.radar.errors import BadInputError
from pipelines.radar.gridding import ScanGeometry
from pipelines.radar.polar import PolarSweep, PolarVolume
from pipelines.radar.products import polar_product

# sweeps further than this from the nominal time betray a broken clock or a mixed-up file
SCAN_TIME_TOLERANCE = pd.Timedelta(minutes=15)


def _odim_header(path: Path, tree) -> tuple[str, pd.Timestamp]:
    with h5py.File(path, "r") as f:
        what = f["what"].attrs if "what" in f else {}
        source, date, time = (attr_text(what.get(k, b"")) for k in ("source", "date", "time"))
    fields = dict(item.split(":", 1) for item in source.split(",") if ":" in item)
    node = fields.get("NOD") or fields.get("RAD") or fields.get("WMO") or path.stem.split("_")[0]
    try:
        nominal = pd.to_datetime(date + time, format="%Y%m%d%H%M%S")
    except ValueError:
        raise BadInputError(path, f"unreadable nominal date/time {date!r} {time!r}") from None
    return node, nominal


def _tree_header(path: Path, tree) -> tuple[str, pd.Timestamp]:
    """Name and start time from the CfRadial-style root of an xradar tree."""
    root = tree.ds
    attrs = {**tree.attrs, **root.attrs}
    node = next(
        (
            attr_text(attrs[k]).strip()
            for k in ("instrument_name", "site_name")
            if attr_text(attrs.get(k) or "").strip()
        ),
        path.name.split("_")[0],
    )
    if not node[0].isalpha():  # a number (WMO index): make it a name
        node = f"site_{node}"
    stamp = (
        attr_text(np.asarray(root["time_coverage_start"].values).item())
        if ("time_coverage_start" in root)
        else ""
    )
    try:
        nominal = (
            pd.Timestamp(stamp.strip()).tz_convert(None)
            if stamp.strip().endswith("Z")
            else (pd.Timestamp(stamp.strip()))
        )
    except ValueError:
        raise BadInputError(path, f"unreadable volume start time {stamp!r}") from None
    return node, nominal


def _open_nexrad(path: Path):
    if path.read_bytes()[:2] == b"\x1f\x8b":  # gzip: xradar wants the plain file
        with gzip.open(path) as src, tempfile.NamedTemporaryFile(suffix=".ar2v") as plain:
            plain.write(src.read())
            plain.flush()
            return xradar.io.open_nexradlevel2_datatree(plain.name).load()
    return xradar.io.open_nexradlevel2_datatree(str(path))


@dataclass(frozen=True)
class _Format:
    open: Callable[[Path], object]
    header: Callable[[Path, object], tuple[str, pd.Timestamp]]
    missing_is_dry: bool  # does a masked gate mean "no echo" (NEXRAD, CfRadial) or "no data"?


_FORMATS = {
    "odim_pvol": _Format(lambda p: xradar.io.open_odim_datatree(str(p)), _odim_header, False),
    "nexrad_l2": _Format(_open_nexrad, _tree_header, True),
    "cfradial1": _Format(lambda p: xradar.io.open_cfradial1_datatree(str(p)), _tree_header, True),
}


def _check_odim_layout(path: Path) -> None:
    """What xradar would fail on with a message naming its own internals."""
    with h5py.File(path, "r") as f:
        sweeps = [name for name in f if name.startswith("dataset")]
        if not sweeps:
            raise BadInputError(path, "no sweep (dataset group) in the volume")
        for name in sweeps:
            rays = f[name]["where"].attrs.get("nrays", 0) if "where" in f[name] else 0
            data = f[name].get("data1/data")
            if int(rays) == 0 or data is None or data.shape[0] == 0:
                raise BadInputError(path, f"sweep {name} has no rays")


def read_volume(path: Path, fmt: str) -> PolarVolume:
    """Decode a polar volume of any supported format; BadInputError says why one cannot be."""
    spec = _FORMATS[fmt]
    if fmt == "odim_pvol":
        _check_odim_layout(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = spec.open(path)
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(
            path, f"xradar cannot read the volume: {type(exc).__name__}: {exc}"
        ) from None
    node, nominal = spec.header(path, tree)
    root = tree.ds
    lat, lon, alt = (float(root[k]) for k in ("latitude", "longitude", "altitude"))
    sweeps = []
    for name in tree.children:
        if not name.startswith("sweep_"):
            continue
        sweep = tree[name].to_dataset()
        if "DBZH" not in sweep or sweep.sizes.get("azimuth", 0) == 0:
            continue
        times = pd.DatetimeIndex(sweep["time"].values)
        if times.isna().all():
            raise BadInputError(path, f"{name} has no ray times")
        geometry = ScanGeometry.of(
            lat,
            lon,
            alt,
            float(sweep["sweep_fixed_angle"]),
            sweep["azimuth"].values,
            sweep["range"].values,
        )
        sweeps.append(PolarSweep(geometry, sweep, spec.missing_is_dry, times.min(), times.max()))
    if not sweeps:
        raise BadInputError(path, "no sweep with DBZH rays in the volume")
    sweeps.sort(key=lambda s: s.geometry.elevation_deg)
    for s in sweeps:
        if (
            abs(s.start - nominal) > SCAN_TIME_TOLERANCE
            or abs(s.end - nominal) > SCAN_TIME_TOLERANCE
        ):
            raise BadInputError(
                path, f"sweep times {s.start}..{s.end} are far from the nominal time {nominal}"
            )
    return PolarVolume(node.lower(), nominal, lat, lon, alt, sweeps)


def _read(fmt: str, path: Path, cfg: MotioncastConfig) -> Decoded:
    return polar_product(read_volume(path, fmt), cfg, fmt, path)


# the readers (pipelines.radar.readers maps the format names to them)
def read_odim_pvol(path: Path, cfg: MotioncastConfig) -> Decoded:
    return _read("odim_pvol", path, cfg)


def read_nexrad_l2(path: Path, cfg: MotioncastConfig) -> Decoded:
    return _read("nexrad_l2", path, cfg)


def read_cfradial1(path: Path, cfg: MotioncastConfig) -> Decoded:
    return _read("cfradial1", path, cfg)
