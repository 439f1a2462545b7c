"""What the forecast cycle's fallback costs: pysteps S-PROG against extrapolation, by domain size.

    PYTHONPATH=. .venv/bin/python bench/fallback.py [--sizes 256 512 1024 1900x2200] [--repeat 3]

Per size, on the synthetic storm (12 leads of 5 minutes, 6 input frames), the whole fallback as
the cycle runs it (``pipelines.nowcast.baselines.PystepsNowcaster``: the LK motion prior, then the
nowcast): median seconds of --repeat runs, peak memory added, and S-PROG / extrapolation as a
ratio. ``forecast.sprog_max_cells`` (the ``auto`` fallback's limit) is chosen from this table so
that S-PROG fits the cycle's budget after its deadline (``forecast.deadline_seconds``) within
the 5-minute period.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import numpy as np
import pandas as pd

from pipelines.grid import Grid
from pipelines.nowcast import get_method
from pipelines.simulate import truth_frames

LEADS = 12
FRAMES_IN = 6


def _frames(ny: int, nx: int) -> np.ndarray:
    grid = Grid.from_extent("EPSG:3035", (3.9e6, 3.0e6, 3.9e6 + nx * 1e3, 3.0e6 + ny * 1e3), 1e3)
    start = pd.Timestamp("2026-06-01T12:00")
    frames = truth_frames("bench", grid, start, 5 * (FRAMES_IN - 1), seed=0)
    return np.stack([f.precip for f in frames]).astype(np.float32)


def _time(method: str, frames: np.ndarray, repeat: int) -> float:
    forecaster = get_method(method)
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        forecaster(frames, LEADS)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["256", "512", "1024", "1900x2200"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {LEADS} leads")
    print("| cells (ny x nx) | extrapolation s | S-PROG s | S-PROG / extrap. | peak RSS GB |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        ny, nx = (int(v) for v in size.split("x")) if "x" in size else (int(size), int(size))
        frames = _frames(ny, nx)
        _time("extrapolation", frames[:, :64, :64], 1)  # imports and first-call costs
        extrap = _time("extrapolation", frames, args.repeat)
        sprog = _time("sprog", frames, args.repeat)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(
            f"| {ny * nx} ({ny} x {nx}) | {extrap:.2f} | {sprog:.2f} | {sprog / extrap:.2f} | "
            f"{peak:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
