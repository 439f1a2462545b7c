"""The forecast store: precip(issue_time, lead_time, y, x) in mm/h, one Zarr group per domain.

Every forecast is one Icechunk commit whose message names the domain, the issue time, the method
and the model: the history is the audit trail of what was issued when. A forecast is stored whole
or not at all (a writer killed mid-write leaves the store as of its last commit), and storing the
same (domain, issue time) again changes nothing unless asked to replace it (the replaced forecast
stays in the history). New issue times are appended, in any order (a backfill comes after the
forecasts it fills in between); readers get them sorted (``ForecastStore.dataset``).

Per issue time the store keeps the method (motionrnn / sprog / extrapolation / persistence), the
model version, why that method was used when it is not the one asked for (``reason``), the times
of the input frames and the archive snapshot they were read from, and when it was issued.
Chunks hold one issue time, every lead and ``chunk_yx`` cells square: the latest forecast over a
region is a few chunk reads, a point's series over a day of issues one small chunk per issue.

Times are stored as int64 minutes (seconds for ``issued_at``) since the epoch, written by this
module only, so no encoder ever chooses the units.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from pipelines.config import ObjectStorageConfig
from pipelines.grid import Grid
from pipelines.store.repository import ISSUE, StoreError, VersionedStore, has_group
from pipelines.store.timeaxis import EPOCH, TIME_UNITS, minutes_since_epoch

log = logging.getLogger(__name__)

PRECIP_ATTRS = {
    "standard_name": "rainfall_rate",
    "long_name": "forecast rain rate",
    "units": "mm h-1",
    "grid_mapping": "crs",
    "coordinates": "valid_time",
    "comment": "NaN where the forecast cannot know: outside radar coverage, or advected from there",
}
ISSUE_ATTRS = {
    "standard_name": "forecast_reference_time",
    "long_name": "issue time: the time of the last input frame",
    "units": TIME_UNITS,
    "calendar": "proleptic_gregorian",
}
LEAD_ATTRS = {"standard_name": "forecast_period", "long_name": "lead time", "units": "minutes"}
VALID_ATTRS = {
    "standard_name": "time",
    "long_name": "valid time: issue_time + lead_time",
    "units": TIME_UNITS,
    "calendar": "proleptic_gregorian",
}
INPUT_ATTRS = {
    "long_name": "times of the input frames",
    "units": TIME_UNITS,
    "calendar": "proleptic_gregorian",
}
ISSUED_AT_ATTRS = {
    "long_name": "wall-clock time the forecast was made",
    "units": "seconds since 1970-01-01",
    "calendar": "proleptic_gregorian",
}
TEXT_ATTRS = {
    "method": {"long_name": "forecast method: motionrnn, sprog, extrapolation or persistence"},
    "model_version": {"long_name": "model registry version ('' for the pysteps methods)"},
    "reason": {"long_name": "why this method when another was asked for ('' when it was)"},
    "archive_snapshot": {"long_name": "archive snapshot the input frames were read from"},
}
TEXT_VARIABLES = tuple(TEXT_ATTRS)
ISSUE_CHUNK = 4096  # issue times per chunk of the per-issue variables


class ForecastStoreError(StoreError):
    """The forecast store cannot be opened or a forecast does not fit it; the message says why."""


@dataclass(frozen=True)
class Forecast:
    """One issued forecast of a domain, with what it was made from."""

    domain: str
    issue_time: pd.Timestamp  # the time of the last input frame
    step_minutes: int  # the domain's time step: the leads are its multiples
    values: np.ndarray  # (n_leads, ny, nx) float32 mm/h, NaN where unknown
    grid: Grid
    method: str
    input_times: tuple[pd.Timestamp, ...]
    archive_snapshot: str
    model_version: str = ""
    reason: str = ""
    issued_at: pd.Timestamp = field(
        default_factory=lambda: pd.Timestamp.now("UTC").tz_convert(None)
    )

    @property
    def lead_minutes(self) -> np.ndarray:
        return self.step_minutes * np.arange(1, self.values.shape[0] + 1, dtype=np.int64)

    @property
    def valid_times(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.issue_time + pd.to_timedelta(self.lead_minutes, unit="min"))

    @property
    def made_by(self) -> str:
        """The method, and the model version when it has one: "motionrnn v0003"."""
        return f"{self.method} {self.model_version}" if self.model_version else self.method

    def message(self) -> str:
        """The commit message: what was issued, for whom, with what."""
        return f"forecast {self.domain} {self.issue_time.isoformat()} {self.made_by}" + (
            f" ({self.reason})" if self.reason else ""
        )


def summarise(f: Forecast) -> dict[str, object]:
    """What a forecast holds, as JSON-ready values: its provenance, leads and rain extent."""
    seen = np.isfinite(f.values)
    leads = f.lead_minutes
    return {
        "domain": f.domain,
        "issue_time": f.issue_time.isoformat(),
        "method": f.method,
        "model_version": f.model_version or None,
        "reason": f.reason or None,
        "lead_minutes": leads.tolist(),
        "valid_times": [t.isoformat() for t in f.valid_times[[0, -1]]],
        "input_times": [t.isoformat() for t in f.input_times],
        "archive_snapshot": f.archive_snapshot,
        "issued_at": f.issued_at.floor("s").isoformat(),  # as stored
        "shape": list(f.values.shape),
        "max_mm_h": round(float(f.values[seen].max()), 3) if seen.any() else None,
        "area_over_1mm_h": [  # share of the known cells, per lead
            round(float((v[k] > 1.0).mean()), 4) if k.any() else None
            for v, k in zip(f.values, seen, strict=True)
        ],
    }


@dataclass(frozen=True)
class WriteResult:
    status: Literal["written", "replaced", "exists"]
    snapshot: str | None  # the commit, None when nothing was written


def _minutes(times) -> np.ndarray:
    return np.array([int(minutes_since_epoch(pd.Timestamp(t))) for t in times], dtype=np.int64)


def _issue_values(f: Forecast) -> dict[str, np.ndarray]:
    """The per-issue variables of one forecast, each with a leading issue_time axis of 1."""
    issue = int(minutes_since_epoch(f.issue_time))
    return {
        ISSUE: np.array([issue], dtype=np.int64),
        "valid_time": (issue + f.lead_minutes)[None],
        "input_time": _minutes(f.input_times)[None],
        "issued_at": np.array([int((f.issued_at - EPOCH).total_seconds())], dtype=np.int64),
        **{name: np.array([getattr(f, name)], dtype=object) for name in TEXT_VARIABLES},
    }


class ForecastStore(VersionedStore):
    """A forecast store at a local path (or s3:// / gs:// URL)."""

    error = ForecastStoreError
    missing = "no forecast store here (run 'motioncast forecast' first)"
    section = "forecasts"

    def __init__(
        self,
        location: str | Path,
        chunk_yx: int = 64,
        compression_level: int = 1,
        create: bool = False,
        storage: ObjectStorageConfig | None = None,
    ):
        super().__init__(location, chunk_yx, compression_level, create, storage)

    # ---- reading -------------------------------------------------------------------------
    def dataset(self, domain: str | None = None, snapshot: str | None = None) -> xr.Dataset:
        """The domain's forecasts as a lazy Dataset, sorted by issue time; ``valid_time`` and
        ``lead_time`` decoded (datetime64, timedelta64)."""
        domain = self.resolve_domain(domain, snapshot)
        ds = xr.open_zarr(
            self._read_store(snapshot), group=domain, consolidated=False, decode_timedelta=True
        )
        order = np.argsort(ds[ISSUE].values, kind="stable")
        if np.any(order != np.arange(len(order))):
            ds = ds.isel({ISSUE: order})
        return ds

    def issue_times(self, domain: str) -> pd.DatetimeIndex:
        """Issue times stored for the domain, sorted (empty when none)."""
        return self.stored_times(domain, ISSUE)

    def forecast(
        self, domain: str, issue_time: pd.Timestamp | None = None, snapshot: str | None = None
    ) -> Forecast:
        """The forecast issued at ``issue_time`` (default: the latest), read whole, as of the
        latest commit or ``snapshot``."""
        ds = self.dataset(domain, snapshot)
        if ds.sizes[ISSUE] == 0:
            raise ForecastStoreError(f"{self.location}: no forecasts of domain {domain!r} yet")
        if issue_time is not None and pd.Timestamp(issue_time) not in ds.indexes[ISSUE]:
            raise ForecastStoreError(
                f"{self.location}: no forecast of domain {domain!r} issued at "
                f"{pd.Timestamp(issue_time).isoformat()}"
            )
        one = ds.isel({ISSUE: -1}) if issue_time is None else ds.sel({ISSUE: issue_time})
        one = one.load()  # one read of everything that issue time holds
        return Forecast(
            domain=domain,
            issue_time=pd.Timestamp(one[ISSUE].values),
            step_minutes=int(ds.attrs["time_step_minutes"]),
            values=one.precip.values,
            grid=Grid.from_coords(ds.crs.attrs["crs_wkt"], ds.x.values, ds.y.values),
            method=str(one.method.values),
            input_times=tuple(pd.DatetimeIndex(one.input_time.values)),
            archive_snapshot=str(one.archive_snapshot.values),
            model_version=str(one.model_version.values),
            reason=str(one.reason.values),
            issued_at=pd.Timestamp(one.issued_at.values),
        )

    def summary(
        self, domain: str, issue_time: pd.Timestamp | None = None, snapshot: str | None = None
    ) -> dict[str, object]:
        """What was issued at ``issue_time`` (default: the latest), as JSON-ready values."""
        return summarise(self.forecast(domain, issue_time, snapshot))

    # ---- writing -------------------------------------------------------------------------
    def write(self, forecast: Forecast, replace: bool = False) -> WriteResult:
        """Store one forecast in one commit; an issue time already stored is left as it is
        unless ``replace``."""
        status, snapshot = self._commit(
            lambda store: self._stage(store, forecast, replace), forecast.message()
        )
        if snapshot is not None:
            log.info("%s: %s (%s)", self.location, forecast.message(), snapshot)
        return WriteResult(status, snapshot)

    def _stage(self, store, f: Forecast, replace: bool) -> tuple[str, bool]:
        if not has_group(store, f.domain):
            self._create(store, f)
            return "written", True
        node = zarr.open_group(store, path=f.domain, mode="r+")
        self._check_fits(node, f)
        issues = node[ISSUE][:]
        hit = np.flatnonzero(issues == int(minutes_since_epoch(f.issue_time)))
        if hit.size and not replace:
            return "exists", False
        i = int(hit[0]) if hit.size else len(issues)
        if not hit.size:
            self.grow(node, ISSUE, i + 1)
        node["precip"][i] = f.values.astype(np.float32)
        for name, values in _issue_values(f).items():
            node[name][i] = values[0]
        return ("replaced" if hit.size else "written"), True

    def _check_fits(self, node: zarr.Group, f: Forecast) -> None:
        grid = Grid.from_coords(node["crs"].attrs["crs_wkt"], node["x"][:], node["y"][:])
        if not f.grid.same_as(grid):
            raise ForecastStoreError(
                f"{self.location}: domain {f.domain!r} holds forecasts on another grid "
                f"({grid.shape} cells, this one {f.grid.shape})"
            )
        leads = node["lead_time"][:]
        if not np.array_equal(leads, f.lead_minutes):
            raise ForecastStoreError(
                f"{self.location}: domain {f.domain!r} holds leads {leads.tolist()} min; this "
                f"forecast has {f.lead_minutes.tolist()}: write it to another store"
            )
        inputs = node["input_time"].shape[1]
        if inputs != len(f.input_times):
            raise ForecastStoreError(
                f"{self.location}: domain {f.domain!r} holds forecasts from {inputs} input "
                f"frames; this one has {len(f.input_times)}: write it to another store"
            )

    def _create(self, store, f: Forecast) -> None:
        """The domain's group, holding its first forecast."""
        cy, cx = self.chunk_edges(f.grid)
        n_leads = f.values.shape[0]
        values = _issue_values(f)
        data: dict[str, tuple] = {
            "precip": ((ISSUE, "lead_time", "y", "x"), f.values[None].astype(np.float32)),
            "crs": ((), np.int8(0), f.grid.cf_grid_mapping()),
            "input_time": ((ISSUE, "input_frame"), values["input_time"], INPUT_ATTRS),
            "issued_at": ((ISSUE,), values["issued_at"], ISSUED_AT_ATTRS),
        }
        for name in TEXT_VARIABLES:
            data[name] = ((ISSUE,), values[name], TEXT_ATTRS[name])
        ds = xr.Dataset(
            data,
            coords={
                ISSUE: (ISSUE, values[ISSUE], ISSUE_ATTRS),
                "lead_time": ("lead_time", f.lead_minutes, LEAD_ATTRS),
                "valid_time": ((ISSUE, "lead_time"), values["valid_time"], VALID_ATTRS),
                "y": ("y", f.grid.y, {"standard_name": "projection_y_coordinate", "units": "m"}),
                "x": ("x", f.grid.x, {"standard_name": "projection_x_coordinate", "units": "m"}),
            },
            attrs={
                "Conventions": "CF-1.10",
                "title": f"motioncast forecasts: rain rate, domain {f.domain}",
                "domain": f.domain,
                "time_step_minutes": f.step_minutes,
            },
        )
        ds["precip"].attrs.update(PRECIP_ATTRS)
        encoding: dict[str, dict[str, object]] = {
            "precip": {
                "chunks": (1, n_leads, cy, cx),
                "compressors": [self.codec],
                "dtype": "float32",
                "_FillValue": np.nan,
            },
            "valid_time": {"chunks": (ISSUE_CHUNK, n_leads)},
            "input_time": {"chunks": (ISSUE_CHUNK, len(f.input_times))},
        }
        for name in (ISSUE, "issued_at", *TEXT_VARIABLES):
            encoding[name] = {"chunks": (ISSUE_CHUNK,)}
        ds.to_zarr(store, group=f.domain, mode="a", consolidated=False, encoding=encoding)


def open_forecasts(
    path: str | Path,
    domain: str | None = None,
    snapshot: str | None = None,
    storage: ObjectStorageConfig | None = None,
) -> xr.Dataset:
    """The forecasts of ``domain`` (or of the store's only domain) as a lazy xarray Dataset,
    sorted by issue time, as of the latest commit or of ``snapshot``."""
    return ForecastStore(path, storage=storage).dataset(domain, snapshot)
