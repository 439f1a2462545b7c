"""A simulated clock for live runs of the synthetic network: radar time runs ``speed`` times
faster than the wall clock from ``start``. The simulator paces its volumes by it and the forecast
cycle reads it (a file both see) to decide what is stale."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class SimClock:
    start: str  # simulated time at wall0 (ISO, UTC)
    speed: float  # simulated seconds per wall-clock second
    wall0: float  # time.time() when the clock started

    @classmethod
    def starting(cls, start: pd.Timestamp, speed: float) -> SimClock:
        return cls(pd.Timestamp(start).isoformat(), float(speed), time.time())

    def now(self) -> pd.Timestamp:
        elapsed = (time.time() - self.wall0) * self.speed
        return pd.Timestamp(self.start) + pd.Timedelta(seconds=elapsed)

    def wait_until(self, when: pd.Timestamp) -> None:
        """Sleep until simulated time ``when``."""
        ahead = (pd.Timestamp(when) - self.now()).total_seconds() / self.speed
        if ahead > 0:
            time.sleep(ahead)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self)))
        return path

    @classmethod
    def load(cls, path: Path) -> SimClock:
        return cls(**json.loads(Path(path).read_text()))
