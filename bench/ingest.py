"""Composite ingest against pysteps' decode-only throughput, per source, with peak memory.

    .venv/bin/python bench/ingest.py [--sources knmi opera mrms] [--repeats 3] [--data DIR]

Decode-only: the pysteps importer over the files, one after the other, as a pysteps script
reads them: ``import_knmi_hdf5`` (92 KNMI frames, 765 x 700), ``import_opera_hdf5`` (24 OPERA
composites, 2200 x 1900), ``import_mrms_grib`` with ``window_size=1`` (36 MRMS PrecipRate files,
3500 x 7000). Ingest: ``pipelines.ingest.ingest`` into a fresh archive store (content detection,
mm/h conversion, checks, hashing, Icechunk commits), with the default configuration (2
decoding processes) and with 1. Prints seconds, frames per second, the ratio ingest /
decode-only (goal on KNMI: >= 1.0) and the peak memory (PSS of this process and its children)
of each path. Imports and one warm-up decode happen before timing; the frames' warnings (OPERA's
clutter cells made unknown) are not printed.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from ingest_timing import arguments, race

SOURCES = {  # name: (folder below the samples, pattern, count, frame, importer and its options)
    "knmi": ("composites/KNMI", "*.h5", 92, "765 x 700", "import_knmi_hdf5", {}),
    "opera": ("composites/opera/20180824", "*.hdf", 24, "2200 x 1900", "import_opera_hdf5", {}),
    "mrms": (
        "composites/mrms/2019/06/10",
        "*.grib2",
        36,
        "3500 x 7000",
        "import_mrms_grib",
        {"window_size": 1},
    ),
}


def _decode_only(read, options: dict, path: Path) -> object:
    return read(str(path), **options)


def main() -> None:
    args = arguments(
        __doc__, sources={"nargs": "+", "choices": list(SOURCES), "default": list(SOURCES)}
    )
    logging.getLogger("pipelines").setLevel(logging.ERROR)  # forked decoders inherit it
    from pipelines.config import load_config
    from pipelines.ingest import decode_file
    from pipelines.radar.pysteps_io import importers

    for name in args.sources:
        folder, pattern, count, shape, importer, options = SOURCES[name]
        files = sorted((args.data / folder).rglob(pattern))
        if len(files) != count:
            raise SystemExit(f"expected the {count} {name} files below {args.data}/{folder}")
        read = getattr(importers, importer)
        decode_file(files[0], load_config())  # warm-up: imports, caches
        read(str(files[0]), **options)
        print(f"\n{name}: {count} frames of {shape}")
        race(
            files,
            f"decode-only ({importer})",
            partial(_decode_only, read, options),
            "frames",
            args.repeats,
        )


if __name__ == "__main__":
    main()
