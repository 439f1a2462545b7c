"""The archive's Zarr layout: its variables and their CF attributes, the values of a slot
(a frame's time and provenance beside its precip), of empty slots, and how they are read back."""

from __future__ import annotations

import numpy as np
import zarr

from pipelines.frame import PROVENANCE_FIELDS, Frame
from pipelines.store.encoded import EncodedPrecip

CONTRIBUTIONS = "contributions"  # <domain>/contributions/<radar>: radar frames staged for mosaics
PRECIP_ATTRS = {
    "standard_name": "rainfall_rate",
    "long_name": "rain rate",
    "units": "mm h-1",
    "grid_mapping": "crs",
    "comment": "NaN where no radar sees; the rate over the period ending at time",
}
WET_MM_H = 0.1  # rain rate from which a cell counts as wet in wet_fraction
WET_ATTRS = {
    "long_name": "share of the seen area with rain",
    "units": "1",
    "threshold_mm_h": WET_MM_H,
    "comment": "for sampling training windows and quick looks",
}
X_ATTRS = {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}
Y_ATTRS = {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}
LON_ATTRS = {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}
LAT_ATTRS = {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}
TIME_CHUNK = 4096  # slots per chunk of the time coordinate and the per-slot variables


def wet_fraction(precip: np.ndarray) -> np.float32:
    """Share of the cells some radar sees where it rains at least WET_MM_H."""
    n = precip.size - np.count_nonzero(np.isnan(precip))
    wet = np.count_nonzero(precip >= WET_MM_H)  # NaN compares False
    return np.float32(wet / n if n else 0.0)


def slot_values(frame: Frame) -> dict[str, object]:
    """The per-slot variables of one frame (all but precip and the time coordinate)."""
    return {
        "present": True,
        "observed_time": frame.time.isoformat(),
        "wet_fraction": (
            frame.precip.wet_fraction
            if isinstance(frame.precip, EncodedPrecip)
            else wet_fraction(frame.precip)
        ),
        **frame.provenance(),
    }


def empty_slots(n: int) -> dict[str, np.ndarray]:
    """Per-slot variables of n slots holding no frame (texts as variable-length strings, which
    xarray stores as such even when n is 0)."""
    text = np.dtypes.StringDType()
    out: dict[str, np.ndarray] = {
        "present": np.zeros(n, dtype=bool),
        "observed_time": np.full(n, "", dtype=text),
        "wet_fraction": np.full(n, np.nan, dtype=np.float32),
    }
    for name in PROVENANCE_FIELDS:
        out[name] = np.full(n, "", dtype=text)
    return out


def as_stored(array: zarr.Array, values: np.ndarray) -> np.ndarray:
    """Per-slot values in the stored array's dtype (strings go in as they are)."""
    if array.dtype == np.dtype(object) or array.dtype.kind == "T":
        return values
    return values.astype(array.dtype)


def reads_as(array: zarr.Array, value: object) -> bool:
    """Whether an unwritten element of ``array`` reads as ``value`` (its fill value)."""
    fill = array.fill_value
    if isinstance(value, float | np.floating) and np.isnan(value):
        return fill is not None and bool(np.isnan(fill))
    return fill is not None and fill == value


SLOT_ATTRS = {
    "present": {"long_name": "a frame is stored in this slot", "comment": "else precip is NaN"},
    "observed_time": {"long_name": "exact time of the frame (ISO 8601), before slotting"},
    "wet_fraction": WET_ATTRS,
}
SLOT_VARIABLES = ("present", "observed_time", "wet_fraction", *PROVENANCE_FIELDS)
