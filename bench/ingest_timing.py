"""What the ingest benchmarks share: the samples' folder, and timing ``pipelines.ingest`` into a
fresh store against a decode-only baseline over the same files, in one run."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

DEFAULT_DATA = Path(
    os.environ.get(
        "MOTIONCAST_RADAR_DATA", Path(__file__).resolve().parents[2] / "shared/data/radar"
    )
)


def arguments(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="radar samples folder")
    parser.add_argument("--repeats", type=int, default=3)
    warnings.simplefilter("ignore")
    return parser.parse_args()


def ingest_seconds(files: list[Path], workers: int) -> float:
    """Wall time of ingesting ``files`` into a fresh store with ``workers`` decoders."""
    from pipelines.config import load_config
    from pipelines.ingest import ingest

    root = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        cfg = load_config(store={"archive": root / "archive"}, ingest={"workers": workers})
        t0 = time.perf_counter()
        result = ingest(files, cfg)
        elapsed = time.perf_counter() - t0
        assert result.ok and sum(result.added.values()) == len(files), result.as_dict()
        return elapsed
    finally:
        shutil.rmtree(root)


def race(
    files: list[Path], baseline: str, decode_only: Callable[[Path], object], unit: str, repeats: int
) -> None:
    """Print the median time, rate and ratio to ``baseline`` of the decode-only loop and of
    ingest with the default 2 decoding processes and with 1."""

    def decode_all() -> float:
        t0 = time.perf_counter()
        for path in files:
            decode_only(path)
        return time.perf_counter() - t0

    rows: dict[str, list[float]] = {
        baseline: [],
        "ingest, 2 workers (default)": [],
        "ingest, 1 worker": [],
    }
    for _ in range(repeats):
        rows[baseline].append(decode_all())
        rows["ingest, 2 workers (default)"].append(ingest_seconds(files, 2))
        rows["ingest, 1 worker"].append(ingest_seconds(files, 1))
    base = len(files) / statistics.median(rows[baseline])
    print(f"{'path':34} {'median s':>9} {unit + '/s':>10} {'ratio':>6}")
    for name, times in rows.items():
        rate = len(files) / statistics.median(times)
        print(f"{name:34} {statistics.median(times):9.3f} {rate:10.2f} {rate / base:6.2f}")
    print(f"(median of {repeats}; ratio = {unit}/s over {baseline})")
