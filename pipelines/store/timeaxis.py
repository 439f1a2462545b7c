"""The archive's regular time axis: one slot per time step, grown in whole blocks ahead of time.

A frame belongs to its nominal slot, its time rounded to the nearest multiple of the domain's step
counted from the Unix epoch; the exact time goes into the frame's provenance (``observed_time``).
Slots are whole minutes, stored as int64 "minutes since 1970-01-01" that only this module
computes: no encoder ever chooses the units, so a frame stamped 12:10:30 cannot change them.

The axis starts at a block boundary and always holds whole blocks (``block_hours`` long, counted
from the epoch too): a frame past the end grows it by whole blocks, a frame before the start
prepends whole blocks. Every frame, however late, is then one region write into its slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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
