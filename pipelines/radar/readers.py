"""The reader registry: one reader per input format, each returning a :class:`Decoded` field.

As in pysteps, ``get_method(name)`` returns the reader; names are those of
``pipelines.radar.formats.FORMATS``. A reader gives the rain rate in mm/h with the time read from
the file's content, and can put it on any grid: composites are resampled from their native grid,
polar volumes are gridded from their gates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.config import MotioncastConfig
from pipelines.grid import Grid


@dataclass
class Decoded:
    source: str  # the default domain name: knmi, mch, rmi, bom, a radar node...
    time: pd.Timestamp  # UTC, tz-naive; end of the accumulation or nominal scan time
    grid: Grid  # the native grid (composites) or the site-centred default grid (volumes)
    centre_lonlat: tuple[float, float]  # where the data lie, to choose a configured domain
    product: str
    to_grid: Callable[[Grid], np.ndarray] = field(repr=False)  # float32 mm/h on a grid
    radars: str = ""
    time_step_minutes: int = 5
    scan_times: str = ""  # the sweeps used and when they were scanned (volumes)
    site_lonlat: tuple[float, float] | None = None  # a single radar's site (volumes)


Reader = Callable[[Path, MotioncastConfig], Decoded]
_READERS: dict[str, Reader] = {}


def register(name: str) -> Callable[[Reader], Reader]:
    def deco(fn: Reader) -> Reader:
        _READERS[name] = fn
        return fn

    return deco


def get_method(name: str) -> Reader:
    """The reader registered under ``name``."""
    from pipelines.radar import composites, volumes  # noqa: F401  (they register themselves)

    try:
        return _READERS[name]
    except KeyError:
        raise ValueError(f"unknown reader {name!r}; known: {', '.join(sorted(_READERS))}") from None
