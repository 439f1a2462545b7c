"""What every reader returns: a :class:`Decoded` field, and the :data:`Reader` signature.

The readers (``composites.py``, ``volumes.py``) and the products import these from here, and the
registry (``readers.py``) maps format names to the readers: nothing imports the registry back.
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
