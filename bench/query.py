"""Query speed of the forecast store against a plain NetCDF file of the same data.

    PYTHONPATH=. .venv/bin/python bench/query.py [--issues 288] [--size 512] [--repeat 5]

A forecast store holding one day of issues (--issues 5-minute issue times, 12 leads, one
--size x --size domain at 1 km; values of the synthetic storm, advected per issue) is written
through ``ForecastStore.write`` (one commit per issue, as the cycle writes), and the same data
into one NetCDF-4 file (zlib level 1, chunks of one issue, all leads and 64 x 64 cells: the
store's layout). Then, each timed --repeat times in fresh objects (the median is printed):

1. open: ``pipelines.open_forecasts`` (the lazy Dataset, issue times sorted) / ``xr.open_dataset``;
2. the latest forecast over a 64 x 64 region (every lead), on the opened Dataset;
3. one cell's series over every issue and lead, on the opened Dataset.

Goals (issue 13): under 0.2 s, 0.2 s and 1 s; each with its ratio to NetCDF.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

START = pd.Timestamp("2026-06-01T00:00")
REGION = 64
LEADS = 12


def build(root: Path, issues: int, size: int) -> tuple[Path, Path]:
    """The forecast store and the NetCDF file of the same forecasts."""
    from pipelines.forecast.store import Forecast, ForecastStore
    from pipelines.grid import Grid
    from pipelines.simulate import truth_frames

    x0, y0, edge = 3.9e6, 3.0e6, size * 1e3
    grid = Grid.from_extent("EPSG:3035", (x0, y0, x0 + edge, y0 + edge), 1e3)
    base = np.stack([f.precip for f in truth_frames("q", grid, START, 5 * (LEADS - 1), seed=3)])
    store = ForecastStore(root / "forecasts", create=True)
    t0 = time.perf_counter()
    for i in range(issues):
        issue = START + pd.Timedelta(minutes=5 * i)
        values = np.roll(base, shift=i, axis=2).astype(np.float32)  # the storm moves on
        inputs = tuple(issue - pd.Timedelta(minutes=5 * k) for k in range(5, -1, -1))
        store.write(Forecast("q", issue, 5, values, grid, "extrapolation", inputs, "S"))
    print(f"store: {issues} forecasts written in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    ds = store.dataset("q").load()
    netcdf = root / "forecasts.nc"
    chunks = (1, LEADS, min(REGION, size), min(REGION, size))
    encoding = {"precip": {"zlib": True, "complevel": 1, "chunksizes": chunks}}
    ds.drop_vars([v for v in ds.data_vars if v != "precip"]).to_netcdf(
        netcdf, engine="netcdf4", encoding=encoding
    )
    print(f"NetCDF: written in {time.perf_counter() - t0:.0f} s")
    return root / "forecasts", netcdf


def timed(
    open_: Callable[[], xr.Dataset], read: Callable[[xr.Dataset], object] | None, repeat: int
):
    """Median seconds of opening (``read`` None) or of ``read`` on a freshly opened Dataset."""
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        ds = open_()
        if read is not None:
            start = time.perf_counter()
            read(ds)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--issues", type=int, default=288)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    import pipelines

    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        store, netcdf = build(Path(tmp), args.issues, args.size)
        stored = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        print(f"sizes: store {stored / 1e6:.0f} MB, NetCDF {netcdf.stat().st_size / 1e6:.0f} MB")
        opens = {
            "store": lambda: pipelines.open_forecasts(store, "q"),
            "netcdf": lambda: xr.open_dataset(netcdf, engine="netcdf4"),
        }
        region = {"y": slice(0, REGION), "x": slice(0, REGION)}
        middle = {"y": args.size // 2, "x": args.size // 2}
        rows = []
        for name, read in (
            ("open", None),
            ("latest 64 x 64 region", lambda ds: ds.precip.isel(issue_time=-1, **region).values),
            ("a cell over all issues", lambda ds: ds.precip.isel(**middle).values),
        ):
            times = {k: timed(o, read, args.repeat) for k, o in opens.items()}
            rows.append((name, times["store"], times["netcdf"]))
        first = pipelines.open_forecasts(store, "q").precip.isel(issue_time=-1, **region).values
        second = xr.open_dataset(netcdf).precip.isel(issue_time=-1, **region).values
        assert np.array_equal(first, second, equal_nan=True), "the two hold different values"
    shape = f"{args.issues} issues x {LEADS} leads x {args.size} x {args.size}"
    print(f"\n{shape}; median of {args.repeat}")
    print(f"{'query':24s} {'store s':>9s} {'NetCDF s':>9s} {'store/NetCDF':>13s}")
    for name, s, n in rows:
        print(f"{name:24s} {s:9.3f} {n:9.3f} {s / n if n else float('nan'):13.2f}")


if __name__ == "__main__":
    main()
