"""Write ODIM_H5 (v2.2) polar volumes (PVOL), as a radar site's signal processor does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

# (numpy dtype, gain, offset, nodata, undetect) of the usual DBZH encodings
DBZH_ENCODINGS: dict[str, tuple[str, float, float, float, float]] = {
    "uint8": ("uint8", 0.5, -32.0, 255.0, 0.0),
    "uint16": ("uint16", 0.01, -327.68, 65535.0, 0.0),
}


@dataclass(frozen=True)
class Sweep:
    elevation_deg: float
    start: pd.Timestamp
    end: pd.Timestamp
    range_start_m: float  # distance to the first gate's start
    gate_m: float
    dbz: np.ndarray  # (n_rays, n_gates) float dBZ; NaN = nodata, -inf = undetect
    ray_azimuth_start_deg: np.ndarray  # (n_rays,), ray k spans [start_k, start_k + 360/n)


def encode_dbz(dbz: np.ndarray, encoding: str) -> tuple[np.ndarray, dict[str, float]]:
    """Quantise dBZ to the raw values of ``encoding``: NaN -> nodata, -inf -> undetect."""
    dtype, gain, offset, nodata, undetect = DBZH_ENCODINGS[encoding]
    lo, hi = undetect + 1, nodata - 1
    raw = np.clip(np.round((np.nan_to_num(dbz, nan=0.0, neginf=0.0) - offset) / gain), lo, hi)
    raw = np.where(np.isneginf(dbz), undetect, raw)
    raw = np.where(np.isnan(dbz), nodata, raw)
    what = {"gain": gain, "offset": offset, "nodata": nodata, "undetect": undetect}
    return raw.astype(dtype), what


def _attrs(group: h5py.Group, values: dict[str, object]) -> None:
    for key, value in values.items():
        group.attrs[key] = np.bytes_(value) if isinstance(value, str) else value


def write_pvol(
    path: Path,
    *,
    node: str,
    place: str,
    lat: float,
    lon: float,
    height_m: float,
    nominal_time: pd.Timestamp,
    sweeps: list[Sweep],
    encoding: str = "uint8",
    software: str = "motioncast",
) -> None:
    """Write one polar volume of DBZH sweeps; the file is complete or absent (write + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with h5py.File(tmp, "w") as f:
        f.attrs["Conventions"] = np.bytes_("ODIM_H5/V2_2")
        _attrs(
            f.create_group("what"),
            {
                "object": "PVOL",
                "version": "H5rad 2.2",
                "date": nominal_time.strftime("%Y%m%d"),
                "time": nominal_time.strftime("%H%M%S"),
                "source": f"NOD:{node},PLC:{place}",
            },
        )
        _attrs(f.create_group("where"), {"lat": lat, "lon": lon, "height": height_m})
        _attrs(f.create_group("how"), {"software": software, "beamwidth": 1.0, "wavelength": 5.3})
        for i, sweep in enumerate(sweeps, start=1):
            ds = f.create_group(f"dataset{i}")
            n_rays, n_gates = sweep.dbz.shape
            _attrs(
                ds.create_group("what"),
                {
                    "product": "SCAN",
                    "startdate": sweep.start.strftime("%Y%m%d"),
                    "starttime": sweep.start.strftime("%H%M%S"),
                    "enddate": sweep.end.strftime("%Y%m%d"),
                    "endtime": sweep.end.strftime("%H%M%S"),
                },
            )
            _attrs(
                ds.create_group("where"),
                {
                    "elangle": float(sweep.elevation_deg),
                    "nbins": int(n_gates),
                    "nrays": int(n_rays),
                    "rstart": sweep.range_start_m / 1000.0,
                    "rscale": float(sweep.gate_m),
                    "a1gate": 0,
                },
            )
            width = 360.0 / n_rays
            t0, t1 = sweep.start.timestamp(), sweep.end.timestamp()
            ray_t = t0 + (t1 - t0) * np.arange(n_rays + 1) / n_rays
            how = ds.create_group("how")
            how.attrs["startazA"] = sweep.ray_azimuth_start_deg.astype(np.float64)
            how.attrs["stopazA"] = (sweep.ray_azimuth_start_deg + width) % 360.0
            how.attrs["startazT"] = ray_t[:-1]
            how.attrs["stopazT"] = ray_t[1:]
            raw, what = encode_dbz(sweep.dbz, encoding)
            data = ds.create_group("data1")
            _attrs(data.create_group("what"), {"quantity": "DBZH", **what})
            dset = data.create_dataset("data", data=raw, compression="gzip", compression_opts=4)
            _attrs(dset, {"CLASS": "IMAGE", "IMAGE_VERSION": "1.2"})
    tmp.replace(path)
