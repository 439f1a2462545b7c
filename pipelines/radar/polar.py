"""A decoded polar volume: its sweeps (as xradar opened them) and where and when it was scanned.

``volumes.py`` builds these from files; ``products.py`` turns them into rain-rate products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.radar.gridding import ScanGeometry

if TYPE_CHECKING:
    import xarray as xr


@dataclass(frozen=True)
class PolarSweep:
    geometry: ScanGeometry
    data: xr.Dataset  # the sweep as xradar opened it: lazy until dbz() reads it
    missing_is_dry: bool
    start: pd.Timestamp
    end: pd.Timestamp

    def dbz(self) -> np.ndarray:
        """(n_rays, n_gates) float32 reflectivity: -inf = no echo (dry), NaN = unknown."""
        return sweep_dbz(self.data, self.missing_is_dry)


@dataclass(frozen=True)
class PolarVolume:
    node: str  # radar name, lower case: the site domain's name
    nominal: pd.Timestamp
    lat: float
    lon: float
    altitude_m: float
    sweeps: list[PolarSweep]  # ordered by elevation, lowest first


def sweep_dbz(sweep: xr.Dataset, missing_is_dry: bool) -> np.ndarray:
    dbzh = sweep["DBZH"]
    dbz = dbzh.values.astype(np.float32)
    if "_Undetect" in dbzh.attrs:  # ODIM: xradar decodes undetect to the raw value's dBZ
        enc = dbzh.encoding
        undetect = dbzh.attrs["_Undetect"] * enc.get("scale_factor", 1.0) + enc.get(
            "add_offset", 0.0
        )
        dbz = np.where(np.isclose(dbz, undetect), -np.inf, dbz)
    if missing_is_dry:
        dbz = np.where(np.isnan(dbz), -np.inf, dbz)
    return dbz
