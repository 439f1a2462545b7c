"""Late frames: write time and memory of one frame arriving 5 minutes to 30 days late, against an
on-time frame (the next slot at the tail) in the same run, on a KNMI-sized domain (765 x 700).

The archive holds the first and the last day of a 31-day span (576 frames); the axis covers the
whole span. Late frames land in empty slots inside it; a frame older than the domain's start
prepends whole blocks (every stored frame moves, one at a time), shown for comparison.

    .venv/bin/python bench/late_frames.py [--days 31]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.frame import Frame
from pipelines.grid import Grid
from pipelines.store import Archive

SHAPE = (765, 700)
GRID = Grid.from_extent("EPSG:3035", (3.9e6, 3.0e6, 3.9e6 + 700e3, 3.0e6 + 765e3), 1000.0)
START = pd.Timestamp("2026-05-01")


def field(rng: np.random.Generator) -> np.ndarray:
    precip = rng.gamma(0.3, 2.0, SHAPE).astype(np.float32)
    precip[:100, :100] = np.nan
    return precip


def frame(t: pd.Timestamp, rng: np.random.Generator) -> Frame:
    return Frame("knmi", t, GRID, field(rng), f"{t:%Y%m%d%H%M}.h5", f"sha-{t}", "bench")


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed_write(archive: Archive, f: Frame) -> tuple[float, float, float]:
    """Seconds, peak MB of Python allocations (numpy included) and growth of the process's peak
    resident memory (Rust and C included; Linux: the peak is reset first) for one commit."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    rss = _status_mb("VmRSS")
    tracemalloc.start()
    t0 = time.perf_counter()
    report = archive.write([f], "bench")
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    assert report.n_written == 1, report
    return seconds, peak, _status_mb("VmHWM") - rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=31)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Archive(Path(tmp) / "archive", create=True)
        end = START + pd.Timedelta(days=args.days)
        late = {  # empty slots, by how late a frame for them arrives after ``end``
            "5 min late": end - pd.Timedelta(minutes=5),
            "1 h late": end - pd.Timedelta(hours=1),
            "1 day late": end - pd.Timedelta(days=1, minutes=5),
            f"{args.days - 2} days late": end - pd.Timedelta(days=args.days - 2),
        }
        for day in (START, end - pd.Timedelta(days=1)):  # first and last day, 48 per commit
            times = pd.date_range(day, periods=288, freq="5min").difference(late.values())
            for i in range(0, len(times), 48):
                archive.write([frame(t, rng) for t in times[i : i + 48]], "fill")
        archive.write([frame(end, rng)], "the tail, growing the axis by a block")
        on_time = timed_write(archive, frame(end + pd.Timedelta(minutes=5), rng))
        rows = [("on time (next slot at the tail)", *on_time)]
        for label, t in late.items():
            rows.append((label, *timed_write(archive, frame(t, rng))))
        before_start = timed_write(archive, frame(START - pd.Timedelta(minutes=5), rng))
        rows.append(("before the domain's start (prepends a block)", *before_start))
    ny, nx = SHAPE
    print(f"late frames on a {ny} x {nx} domain, {args.days}-day axis, {2 * 288 - 2} stored")
    print(f"{'frame':46s} {'write s':>8s} {'py MB':>7s} {'+RSS MB':>8s} {'time ratio':>10s}")
    for label, seconds, peak, rss in rows:
        print(f"{label:46s} {seconds:8.3f} {peak:7.1f} {rss:8.1f} {seconds / on_time[0]:10.2f}")


if __name__ == "__main__":
    main()
