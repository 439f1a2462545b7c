"""Which archived frame a user's time means (``motioncast plot map --time``).

The archive's time axis may be regular, with absent slots NaN and a boolean ``present(time)``
marking the frames that exist; then only present frames are chosen. Without ``present`` every
time on the axis is a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

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
