"""Issuing one forecast: the input window from the archive, the forecaster, the forecast store.

    inputs = read_inputs(archive, "knmi", frames_in=6)          # the newest complete window
    forecast = make_forecast(inputs, forecaster, lead_minutes=60)
    ForecastStore(...).write(forecast)

``issue`` does all three; ``motioncast forecast``, the Serve app and the forecast cycle all go
through it, so the model can change without touching them. The input window is the
``frames_in`` frames ending at the issue time, every slot present, read from one archive
snapshot (recorded with the forecast).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.forecast.store import Forecast, ForecastStore, WriteResult, summarise
from pipelines.grid import Grid
from pipelines.nowcast import Nowcaster
from pipelines.store.archive import Archive, ArchiveError
from pipelines.store.timeaxis import complete_starts, slot_of

log = logging.getLogger(__name__)


class ForecastError(ValueError):
    """A forecast that cannot be made from what is there; the message says why in one line."""


class DeadlineExceeded(ForecastError):
    """The forecast was given up before it was stored: its deadline passed."""


def check_deadline(deadline: float | None, stage: str) -> None:
    """DeadlineExceeded when ``deadline`` (a ``time.monotonic()`` value) has passed."""
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded(f"deadline passed before {stage}: given up, nothing stored")


@dataclass(frozen=True)
class Inputs:
    """The input window of one forecast."""

    domain: str
    issue_time: pd.Timestamp  # the last frame's slot
    step_minutes: int
    frames: np.ndarray  # (frames_in, ny, nx) float32 mm/h, NaN unknown
    times: tuple[pd.Timestamp, ...]
    grid: Grid
    snapshot: str  # the archive commit they were read from


def issue_times(ds, frames_in: int) -> pd.DatetimeIndex:
    """Slots of an archive domain's dataset that end a complete input window (``frames_in``
    present slots in a row), oldest first."""
    starts = complete_starts(ds.present.values.astype(bool), frames_in)
    return pd.DatetimeIndex(ds.time.values[starts + frames_in - 1])


def _domain(archive: Archive, domain: str, snapshot: str):
    try:
        return archive.dataset(domain, snapshot)
    except ArchiveError as exc:
        raise ForecastError(str(exc)) from None


def complete_windows(archive: Archive, domain: str, frames_in: int) -> pd.DatetimeIndex:
    """Issue times the archive has a complete input window for, oldest first."""
    return issue_times(_domain(archive, domain, archive.head()), frames_in)


def read_inputs(
    archive: Archive,
    domain: str,
    frames_in: int,
    issue_time: pd.Timestamp | None = None,
    snapshot: str | None = None,
) -> Inputs:
    """The ``frames_in`` frames ending at ``issue_time`` (default: the newest complete window),
    from ``snapshot`` (default: the archive's latest commit). ForecastError when the domain is
    unknown or the window incomplete."""
    snapshot = snapshot or archive.head()
    ds = _domain(archive, domain, snapshot)
    step = int(ds.attrs["time_step_minutes"])
    times = pd.DatetimeIndex(ds.time.values)
    present = ds.present.values.astype(bool)
    if issue_time is None:
        complete = issue_times(ds, frames_in)
        if not len(complete):
            raise ForecastError(
                f"domain {domain}: no {frames_in} consecutive frames in the archive yet"
            )
        issue_time = complete[-1]
    slot = slot_of(pd.Timestamp(issue_time), step)
    wanted = pd.DatetimeIndex(slot - pd.Timedelta(minutes=step) * np.arange(frames_in)[::-1])
    index = times.get_indexer(wanted)
    missing = [t for t, i in zip(wanted, index, strict=True) if i < 0 or not present[i]]
    if missing:
        shown = ", ".join(t.strftime("%Y-%m-%d %H:%M") for t in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ForecastError(
            f"domain {domain}: no complete input window ending at {slot.isoformat()}: "
            f"{len(missing)} of {frames_in} frames missing ({shown}{more})"
        )
    frames = ds.precip.isel(time=slice(index[0], index[-1] + 1)).values.astype(np.float32)
    grid = Grid.from_coords(ds.crs.attrs["crs_wkt"], ds.x.values, ds.y.values)
    return Inputs(domain, slot, step, frames, tuple(wanted), grid, snapshot)


def lead_count(lead_minutes: int, step_minutes: int) -> int:
    """Leads of a domain's step up to ``lead_minutes`` (at least one)."""
    return max(1, lead_minutes // step_minutes)


def make_forecast(
    inputs: Inputs, forecaster: Nowcaster, lead_minutes: int, reason: str = ""
) -> Forecast:
    """The forecast of ``inputs`` by ``forecaster``, every step of the domain to lead_minutes."""
    try:
        values, version = forecaster(inputs.frames, lead_count(lead_minutes, inputs.step_minutes))
    except ForecastError:  # a deadline passed, or the forecaster's own one-line reason
        raise
    except ValueError as exc:  # inputs the forecaster cannot take
        raise ForecastError(f"{forecaster.name}: {exc} (forecast.frames_in)") from None
    return Forecast(
        domain=inputs.domain,
        issue_time=inputs.issue_time,
        step_minutes=inputs.step_minutes,
        values=np.asarray(values, dtype=np.float32),
        grid=inputs.grid,
        method=forecaster.name,
        input_times=inputs.times,
        archive_snapshot=inputs.snapshot,
        model_version=version,
        reason=reason,
    )


@dataclass(frozen=True)
class Issued:
    domain: str
    issue_time: pd.Timestamp
    forecast: Forecast | None  # None when that issue time was stored already
    result: WriteResult
    seconds: dict[str, float]  # wall-clock time of each stage: read, forecast, write

    @property
    def stored(self) -> bool:
        """Whether this call stored its forecast (False: the store held that issue time
        already, or another writer committed it first)."""
        return self.result.status != "exists"

    def summary(self, forecasts: ForecastStore) -> dict[str, object]:
        """The summary of what the store holds for this issue time (``store.summarise``: the
        forecast made here when it was stored, else the stored one, read back), with the
        write's status and snapshot and the stages' times."""
        made = self.forecast if self.stored else None
        out = summarise(made) if made else forecasts.summary(self.domain, self.issue_time)
        return {
            **out,
            "status": self.result.status,
            "snapshot": self.result.snapshot,
            "seconds": self.seconds,
        }


def issue(
    archive: Archive,
    forecasts: ForecastStore,
    forecaster: Nowcaster,
    domain: str,
    frames_in: int,
    lead_minutes: int,
    issue_time: pd.Timestamp | None = None,
    replace: bool = False,
    reason: str = "",
    deadline: float | None = None,
) -> Issued:
    """Make and store one forecast; an issue time already stored is not made again unless
    ``replace`` (then the forecast is None and the result's status 'exists'). With a
    ``deadline`` (``time.monotonic()``), DeadlineExceeded when it passes before the forecast is
    made or before it is written: a forecast given up is never stored."""
    clock = _Stopwatch()
    inputs = read_inputs(archive, domain, frames_in, issue_time)
    if not replace and inputs.issue_time in forecasts.issue_times(domain):
        return Issued(domain, inputs.issue_time, None, WriteResult("exists", None), clock("read"))
    clock("read")
    check_deadline(deadline, "the forecast")
    forecast = make_forecast(inputs, forecaster, lead_minutes, reason)
    clock("forecast")
    check_deadline(deadline, "the write")
    result = forecasts.write(forecast, replace=replace)
    return Issued(domain, inputs.issue_time, forecast, result, clock("write"))


class _Stopwatch:
    """Seconds per stage: each call ends a stage and returns the stages so far."""

    def __init__(self):
        self.last = time.perf_counter()
        self.stages: dict[str, float] = {}

    def __call__(self, stage: str) -> dict[str, float]:
        now = time.perf_counter()
        self.stages[stage] = round(now - self.last, 3)
        self.last = now
        return dict(self.stages)
