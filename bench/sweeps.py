"""Polar-volume ingest throughput against xradar decoding alone, on the 8 behel volumes.

    .venv/bin/python bench/sweeps.py [--repeats 3] [--data DIR]

Decode-only: ``xradar.io.open_odim_datatree(path).load()`` for each volume (every sweep read).
Full path: ``pipelines.ingest.ingest`` into a fresh archive store: format detection, decode,
lowest-sweep product, Z-R, gridding onto the 400 x 400 km site domain, checks, one commit; with
the default 2 decoding processes and with 1. The gridding index is built once before timing
(warm-up), as it is for every volume after a radar's first. Also printed: the time to build the
index for one sweep geometry, and the per-sweep gridding time with the index cached, for
nearest and inverse-distance (k=4) gridding. Goal: full path >= 0.5 of decode-only throughput.
"""

from __future__ import annotations

import statistics
import time

from ingest_timing import arguments, race


def main() -> None:
    args = arguments(__doc__)
    files = sorted((args.data / "sweeps/behel").glob("*.hdf"))
    if len(files) != 8:
        raise SystemExit(f"expected the 8 behel volumes below {args.data}/sweeps/behel")

    import xradar

    from pipelines.config import load_config
    from pipelines.grid import Grid
    from pipelines.ingest import decode_file
    from pipelines.radar.gridding import grid_index, grid_sweep
    from pipelines.radar.volumes import read_volume

    cfg = load_config()
    decode_file(files[0], cfg)  # warm-up: imports and the gridding index of behel's geometry

    volume = read_volume(files[0], "odim_pvol")
    sweep = volume.sweeps[0]
    dbz = sweep.dbz()
    grid = Grid.centred_on(volume.lat, volume.lon, 400e3, 1000.0)
    index_build, gridding = {}, {}
    for method in ("nearest", "idw"):
        grid_index.cache_clear()
        t0 = time.perf_counter()
        grid_sweep(dbz, sweep.geometry, grid, 200e3, method)
        index_build[method] = time.perf_counter() - t0
        runs = []
        for _ in range(20):
            t0 = time.perf_counter()
            grid_sweep(dbz, sweep.geometry, grid, 200e3, method)
            runs.append(time.perf_counter() - t0)
        gridding[method] = statistics.median(runs)
    decode_file(files[0], cfg)  # the default method's index, cached again for the runs below

    race(
        files,
        "xradar decode only",
        lambda p: xradar.io.open_odim_datatree(str(p)).load(),
        "volumes",
        args.repeats,
    )
    print("(8 behel volumes, 12 sweeps of 360 x 800)")
    print(f"gridding one sweep onto 400 x 400 cells ({sweep.dbz().size} gates):")
    for method in ("nearest", "idw"):
        print(
            f"  {method:8} index build {index_build[method] * 1000:7.1f} ms (first volume), "
            f"cached gather {gridding[method] * 1000:6.2f} ms per sweep"
        )


if __name__ == "__main__":
    main()
