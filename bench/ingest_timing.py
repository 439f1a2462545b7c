"""What the ingest benchmarks share: the samples' folder, and timing ``pipelines.ingest`` into a
fresh store against a decode-only baseline over the same files, in one run, with the peak
memory of each path."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import psutil

DEFAULT_DATA = Path(
    os.environ.get(
        "MOTIONCAST_RADAR_DATA", Path(__file__).resolve().parents[2] / "shared/data/radar"
    )
)
SAMPLE_SECONDS = 0.05  # how often the memory of this process and its children is read


def arguments(doc: str, **extra: dict) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="radar samples folder")
    parser.add_argument("--repeats", type=int, default=3)
    for name, options in extra.items():
        parser.add_argument(f"--{name}", **options)
    warnings.simplefilter("ignore")
    return parser.parse_args()


def ingest_seconds(files: list[Path], workers: int, **ingest: object) -> float:
    """Wall time of ingesting ``files`` into a fresh store with ``workers`` decoders (and any
    other ``ingest`` settings)."""
    from pipelines.config import load_config
    from pipelines.ingest import ingest as run

    root = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        cfg = load_config(
            stores={"archive": {"location": root / "archive"}},
            ingest={"workers": workers, **ingest},
        )
        t0 = time.perf_counter()
        result = run(files, cfg)
        elapsed = time.perf_counter() - t0
        assert result.ok and sum(result.added.values()) == len(files), result.as_dict()
        return elapsed
    finally:
        shutil.rmtree(root)


def _tree_memory() -> int:
    """Bytes of memory this process and all its children hold: the sum of their proportional
    set sizes (PSS), which counts a page forked children share once, where the sum of their
    resident sizes (RSS) would count it in every child."""
    me = psutil.Process()
    total = 0
    for process in [me, *me.children(recursive=True)]:
        try:
            total += process.memory_full_info().pss
        except psutil.Error:  # gone between the listing and the reading
            pass
    return total


def peak_megabytes(run: Callable[[], object]) -> float:
    """The peak memory of this process and its children while ``run`` runs, above what they
    held before it (MB): what the path itself needs."""
    before = _tree_memory()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_SECONDS):
            peak[0] = max(peak[0], _tree_memory())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return (max(peak[0], _tree_memory()) - before) / 2**20


def race(
    files: list[Path], baseline: str, decode_only: Callable[[Path], object], unit: str, repeats: int
) -> dict[str, float]:
    """Print the median time, rate, ratio to ``baseline`` and peak memory of the decode-only
    loop and of ingest with the default 2 decoding processes and with 1; return the ratios.
    Memory is measured in one more run of each path, apart from the timed ones (the sampling
    thread costs time)."""

    def decode_all() -> None:
        for path in files:
            decode_only(path)

    paths: dict[str, Callable[[], object]] = {
        baseline: decode_all,
        "ingest, 2 workers (default)": lambda: ingest_seconds(files, 2),
        "ingest, 1 worker": lambda: ingest_seconds(files, 1),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, run in paths.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    memory = {name: peak_megabytes(run) for name, run in paths.items()}
    base = len(files) / statistics.median(times[baseline])
    ratios = {}
    print(f"{'path':34} {'median s':>9} {unit + '/s':>10} {'ratio':>6} {'peak MB':>8}")
    for name, runs in times.items():
        rate = len(files) / statistics.median(runs)
        ratios[name] = rate / base
        print(
            f"{name:34} {statistics.median(runs):9.3f} {rate:10.2f} {rate / base:6.2f} "
            f"{memory[name]:8.0f}"
        )
    print(f"(median of {repeats}; ratio = {unit}/s over {baseline}; peak MB: above the start)")
    return ratios
