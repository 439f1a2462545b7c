"""Ingest throughput against decode-only throughput on the 92 KNMI composites.

    .venv/bin/python bench/ingest.py [--repeats 3] [--data DIR]

Decode-only: pysteps' ``import_knmi_hdf5`` over the files, one after the other, as a pysteps
script reads them. Ingest: ``pipelines.ingest.ingest`` into a fresh archive store (content
detection, mm/h conversion, checks, hashing, Icechunk commits of 64 frames), with the default
configuration (2 decoding processes) and with 1. Prints frames per second and the ratio
ingest / decode-only (goal: >= 0.7). Imports and one warm-up decode happen before timing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

DEFAULT_DATA = Path(
    os.environ.get(
        "MOTIONCAST_RADAR_DATA", Path(__file__).resolve().parents[2] / "shared/data/radar"
    )
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="radar samples folder")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    files = sorted((args.data / "composites/KNMI").rglob("*.h5"))
    if len(files) != 92:
        raise SystemExit(f"expected the 92 KNMI files below {args.data}/composites/KNMI")

    from pipelines.config import load_config
    from pipelines.ingest import decode_file, ingest
    from pipelines.radar.pysteps_io import importers
    from pipelines.store import open_archive

    decode_file(files[0], load_config())  # warm-up: imports, caches

    def decode_only() -> float:
        t0 = time.perf_counter()
        for path in files:
            importers.import_knmi_hdf5(str(path))
        return time.perf_counter() - t0

    def ingest_run(workers: int) -> float:
        root = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
        try:
            cfg = load_config(store={"archive": root / "archive"}, ingest={"workers": workers})
            t0 = time.perf_counter()
            result = ingest(files, cfg)
            elapsed = time.perf_counter() - t0
            assert result.ok and open_archive(root / "archive").sizes["time"] == 92
            return elapsed
        finally:
            shutil.rmtree(root)

    rows = {
        "decode-only (pysteps importer)": [],
        "ingest, 2 workers (default)": [],
        "ingest, 1 worker": [],
    }
    for _ in range(args.repeats):
        rows["decode-only (pysteps importer)"].append(decode_only())
        rows["ingest, 2 workers (default)"].append(ingest_run(2))
        rows["ingest, 1 worker"].append(ingest_run(1))
    base = 92 / statistics.median(rows["decode-only (pysteps importer)"])
    print(f"{'path':34} {'median s':>9} {'frames/s':>9} {'ratio':>6}")
    for name, times in rows.items():
        fps = 92 / statistics.median(times)
        print(f"{name:34} {statistics.median(times):9.3f} {fps:9.1f} {fps / base:6.2f}")
    print(
        f"(92 KNMI frames 765 x 700, median of {args.repeats}; ratio = frames/s over decode-only)"
    )


if __name__ == "__main__":
    main()
