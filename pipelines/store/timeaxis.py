"""The archive's regular time axis: one slot per time step, grown in whole blocks ahead of time.

A frame belongs to its nominal slot, its time rounded to the nearest multiple of the domain's step
counted from the Unix epoch; the exact time goes into the frame's provenance (``observed_time``).
Slots are whole minutes, stored as int64 "minutes since 1970-01-01" that only this module
computes: no encoder ever chooses the units, so a frame stamped 12:10:30 cannot change them.

The axis starts at a block boundary and always holds whole blocks (``block_hours`` long, counted
from the epoch too): a frame past the end grows it by whole blocks, a frame before the start
prepends whole blocks. Every frame, however late, is then one region write into its slot.

Also what readers of the axis share: the runs of present slots (``complete_starts``: training
windows, forecast inputs), a user's time read as a UTC time (``parse_time``, ``naive_utc``: the
stores' times are tz-naive UTC), and the frame a user's time names (``select_frame``: ``motioncast
plot map --time``; on a regular axis only present slots, marked by ``present(time)``, count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

EPOCH = pd.Timestamp("1970-01-01")
TIME_UNITS = "minutes since 1970-01-01"
TIME_ATTRS = {
    "standard_name": "time",
    "units": TIME_UNITS,
    "calendar": "proleptic_gregorian",
    "axis": "T",
    "comment": "nominal slot: the frame's exact time is in observed_time",
}


def minutes_since_epoch(t: pd.Timestamp) -> float:
    return (t - EPOCH) / pd.Timedelta(minutes=1)


def slot_of(t: pd.Timestamp, step_minutes: int) -> pd.Timestamp:
    """The nominal slot of a time: the nearest multiple of the step (half a step rounds up)."""
    n = np.floor(minutes_since_epoch(t) / step_minutes + 0.5)
    return EPOCH + pd.Timedelta(minutes=int(n) * step_minutes)


@dataclass(frozen=True)
class TimeAxis:
    start: int  # first slot, minutes since the epoch
    step: int  # minutes
    length: int  # slots
    block: int  # slots per block

    @classmethod
    def for_step(cls, step_minutes: int, block_hours: float, start: int = 0, length: int = 0):
        block = max(1, round(block_hours * 60 / step_minutes))
        return cls(start, step_minutes, length, block)

    @property
    def block_minutes(self) -> int:
        return self.block * self.step

    def index(self, slot: pd.Timestamp) -> int:
        """Position of a slot (may be negative or past the end: see ``covering``)."""
        offset = int(minutes_since_epoch(slot)) - self.start
        if offset % self.step:
            raise ValueError(f"{slot} is not on the {self.step}-minute axis")
        return offset // self.step

    def covering(self, first: pd.Timestamp, last: pd.Timestamp) -> TimeAxis:
        """The smallest axis of whole blocks holding this one and the slots first..last."""
        lo, hi = int(minutes_since_epoch(first)), int(minutes_since_epoch(last))
        if self.length:
            lo, hi = min(lo, self.start), max(hi, self.start + (self.length - 1) * self.step)
        bm = self.block_minutes
        start = lo // bm * bm
        end = (hi // bm + 1) * bm  # exclusive, a block boundary
        return TimeAxis(start, self.step, (end - start) // self.step, self.block)

    def minutes(self) -> np.ndarray:
        """The int64 values of the stored time coordinate."""
        return self.start + self.step * np.arange(self.length, dtype=np.int64)

    def times(self) -> pd.DatetimeIndex:
        return EPOCH + pd.to_timedelta(self.minutes(), unit="min")


def complete_starts(present: np.ndarray, length: int) -> np.ndarray:
    """Start indices of runs of ``length`` present slots on a regular time axis."""
    if len(present) < length:
        return np.array([], dtype=np.int64)
    counts = np.convolve(present.astype(np.int64), np.ones(length, dtype=np.int64), mode="valid")
    return np.flatnonzero(counts == length)


TIME_FORMS = "'last' or a UTC time such as 2026-06-01T12:00"


class FrameSelectError(ValueError):
    """The time does not name a frame of the archive; the message (one line) says why."""


@dataclass(frozen=True)
class Selected:
    index: int  # position on the dataset's time axis
    time: pd.Timestamp  # the frame's time
    requested: pd.Timestamp | None  # None for 'last'

    @property
    def exact(self) -> bool:
        return self.requested is None or self.requested == self.time


def parse_time(text: str, option: str = "--time") -> pd.Timestamp | None:
    """'last' -> None; else a tz-naive UTC time (an offset or Z is converted to UTC).

    Words pandas would read against the local clock ('now', 'today') are refused with the rest.
    """
    text = text.strip()
    if text.lower() == "last":
        return None
    try:
        when = pd.Timestamp(text) if any(c.isdigit() for c in text) else pd.NaT
    except (ValueError, TypeError, OverflowError):
        when = pd.NaT
    if pd.isna(when):
        raise FrameSelectError(f"{option} {text!r} is not a time: give {TIME_FORMS}")
    return naive_utc(when)


def naive_utc(when: pd.Timestamp) -> pd.Timestamp:
    """A tz-naive UTC time, the stores' convention (an aware time is converted to UTC)."""
    return when.tz_convert("UTC").tz_localize(None) if when.tzinfo is not None else when


def select_frame(ds: xr.Dataset, text: str) -> Selected:
    """The frame ``text`` names: 'last', the frame at that time, or the nearest present frame
    when the time lies within the archive's range (extended by one time step at each end)."""
    requested = parse_time(text)
    times = pd.DatetimeIndex(ds["time"].values)
    present = (
        np.asarray(ds["present"].values, dtype=bool)
        if "present" in ds.variables
        else np.ones(len(times), dtype=bool)
    )
    candidates = np.flatnonzero(present)
    if len(candidates) == 0:
        raise FrameSelectError("the domain holds no frames")
    if requested is None:
        last = int(candidates[-1])
        return Selected(last, times[last], None)
    first, last = times[candidates[0]], times[candidates[-1]]
    step = pd.Timedelta(minutes=int(ds.attrs.get("time_step_minutes", 5)))
    if requested < first - step or requested > last + step:
        raise FrameSelectError(
            f"--time {requested:%Y-%m-%d %H:%M} is outside the archive's range: "
            f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC "
            f"({len(candidates)} frames); nothing plotted"
        )
    offsets = np.abs((times[candidates] - requested).to_numpy())
    index = int(candidates[int(np.argmin(offsets))])  # a tie goes to the earlier frame
    return Selected(index, times[index], requested)
