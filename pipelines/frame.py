"""A frame: one rain-rate field on a grid at one time, with where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.grid import Grid

if TYPE_CHECKING:  # the store's encoding, which a frame carries but never uses itself
    from pipelines.store.encoded import EncodedPrecip

# per-frame provenance stored beside precip, one string per frame
PROVENANCE_FIELDS = (
    "source_files",
    "source_sha256",
    "source_format",
    "radars",
    "product",
    "scan_times",
    "updates",
    "quality",
)


@dataclass
class Frame:
    domain: str
    time: pd.Timestamp  # end of the observation/accumulation period, UTC, tz-naive, exact
    grid: Grid
    precip: np.ndarray | EncodedPrecip  # (ny, nx) float32 mm/h, NaN where no radar sees;
    # encoded as the archive stores it on its way from a decoding process
    source_files: str  # comma-separated file names
    source_sha256: str  # comma-separated content hashes, same order
    source_format: str
    radars: str = ""
    product: str = ""
    scan_times: str = ""
    updates: str = ""  # for a mosaic: radars that arrived after the slot was first written
    quality: str = ""  # cells set to unknown by the checks, how many and why
    time_step_minutes: int = 5
    site_lonlat: tuple[float, float] | None = None  # a single radar's product: where it stands

    def provenance(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in PROVENANCE_FIELDS}
