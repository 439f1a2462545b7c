"""Which GRIB2 library reads MRMS PrecipRate fastest, and what each installs: the measurement
behind motioncast's choice of pygrib (issue 21).

    .venv/bin/python bench/grib.py [--files 8] [--data DIR]

Decodes the first ``--files`` MRMS files (3500 x 7000, grid_png packing) into a numpy array with
every library importable here, after one warm-up decode, and prints the median seconds per file,
the ratio to pygrib (the chosen one, which pysteps' ``import_mrms_grib`` also uses) and the size
the library's distributions install. The project's environment has pygrib only; to compare all
three, run it from a scratch environment that also holds the others:

    python -m venv /tmp/gribvenv
    /tmp/gribvenv/bin/pip install pygrib==2.1.8 eccodes eccodeslib cfgrib xarray
    /tmp/gribvenv/bin/python bench/grib.py

The script imports nothing from motioncast, so that it runs in such an environment as it is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(
    os.environ.get(
        "MOTIONCAST_RADAR_DATA", Path(__file__).resolve().parents[2] / "shared/data/radar"
    )
)


def read_pygrib(path: Path) -> np.ndarray:
    import pygrib

    with pygrib.open(str(path)) as grbs:
        return np.asarray(grbs.read(1)[0].values, dtype=np.float32)


def read_eccodes(path: Path) -> np.ndarray:
    import eccodes

    with path.open("rb") as f:
        gid = eccodes.codes_grib_new_from_file(f)
        try:
            ny, nx = eccodes.codes_get(gid, "Nj"), eccodes.codes_get(gid, "Ni")
            values = eccodes.codes_get_values(gid)
        finally:
            eccodes.codes_release(gid)
    return values.reshape(ny, nx).astype(np.float32)


def read_cfgrib(path: Path) -> np.ndarray:
    import xarray as xr

    with xr.open_dataset(path, engine="cfgrib", backend_kwargs={"indexpath": ""}) as ds:
        return next(iter(ds.data_vars.values())).values.astype(np.float32)


# library: (reader, the distributions it installs)
LIBRARIES: dict[str, tuple[Callable[[Path], np.ndarray], tuple[str, ...]]] = {
    "pygrib (eccodes bundled)": (read_pygrib, ("pygrib",)),
    "eccodes-python (eccodeslib)": (read_eccodes, ("eccodes", "eccodeslib", "eckitlib")),
    "cfgrib (xarray engine, no index)": (
        read_cfgrib,
        ("cfgrib", "eccodes", "eccodeslib", "eckitlib"),
    ),
}


def installed_megabytes(distributions: tuple[str, ...]) -> float | None:
    """What the distributions occupy on disk (MB); None when one is not installed."""
    total = 0
    for name in distributions:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            return None
        total += sum(f.size or 0 for f in files)
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="radar samples folder")
    parser.add_argument("--files", type=int, default=8)
    args = parser.parse_args()
    files = sorted((args.data / "composites/mrms/2019/06/10").glob("*.grib2"))[: args.files]
    if not files:
        raise SystemExit(f"no MRMS files below {args.data}/composites/mrms/2019/06/10")
    seconds: dict[str, float] = {}
    sizes: dict[str, float] = {}
    reference = None
    for name, (read, distributions) in LIBRARIES.items():
        size = installed_megabytes(distributions)
        if size is None:
            print(f"{name}: not installed here, skipped")
            continue
        first = read(files[0])  # warm-up: imports, definitions
        if reference is None:
            reference = first
        elif not np.array_equal(first, reference, equal_nan=True):
            raise SystemExit(f"{name} reads other values than {next(iter(seconds))}")
        runs = []
        for path in files:
            t0 = time.perf_counter()
            read(path)
            runs.append(time.perf_counter() - t0)
        seconds[name], sizes[name] = statistics.median(runs), size
    base = seconds.get(next(iter(LIBRARIES)))
    print(f"{'library':34} {'s/file':>7} {'x pygrib':>9} {'installed MB':>13}")
    for name, s in seconds.items():
        ratio = f"{s / base:9.2f}" if base else f"{'-':>9}"
        print(f"{name:34} {s:7.3f} {ratio} {sizes[name]:13.0f}")
    print(f"(median of {len(files)} files after one warm-up; values identical across libraries)")


if __name__ == "__main__":
    main()
