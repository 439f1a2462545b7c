"""The synthetic storm itself as archive frames, with no radar in between: quick, plentiful
training data for tests, benchmarks and pre-training (the radar path is ``simulate_network``)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from pipelines.config import SimulatorConfig
from pipelines.frame import Frame
from pipelines.grid import Grid
from pipelines.simulate.weather import StormField


def truth_frames(
    domain: str,
    grid: Grid,
    start: pd.Timestamp,
    minutes: int,
    seed: int,
    cfg: SimulatorConfig | None = None,
) -> Iterator[Frame]:
    """The storm's rain rate on ``grid`` every ``cfg.interval_minutes`` from ``start``."""
    cfg = cfg or SimulatorConfig()
    storm = StormField(grid, cfg, np.random.default_rng(seed))
    for k in range(minutes // cfg.interval_minutes + 1):
        if k:
            storm.step(cfg.interval_minutes * 60.0)
        time = pd.Timestamp(start) + pd.Timedelta(minutes=k * cfg.interval_minutes)
        name = f"{time:%Y%m%dT%H%M}Z_truth_seed{seed}"
        yield Frame(
            domain,
            time,
            grid,
            storm.rain_rate(),
            name,
            name,
            "synthetic truth",
            time_step_minutes=cfg.interval_minutes,
        )
