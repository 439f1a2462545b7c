"""Ingest throughput against decode-only throughput on the 92 KNMI composites.

    .venv/bin/python bench/ingest.py [--repeats 3] [--data DIR]

Decode-only: pysteps' ``import_knmi_hdf5`` over the files, one after the other, as a pysteps
script reads them. Ingest: ``pipelines.ingest.ingest`` into a fresh archive store (content
detection, mm/h conversion, checks, hashing, Icechunk commits of 64 frames), with the default
configuration (2 decoding processes) and with 1. Prints frames per second and the ratio
ingest / decode-only (goal: >= 0.7). Imports and one warm-up decode happen before timing.
"""

from __future__ import annotations

from ingest_timing import arguments, race


def main() -> None:
    args = arguments(__doc__)
    files = sorted((args.data / "composites/KNMI").rglob("*.h5"))
    if len(files) != 92:
        raise SystemExit(f"expected the 92 KNMI files below {args.data}/composites/KNMI")

    from pipelines.config import load_config
    from pipelines.ingest import decode_file
    from pipelines.radar.pysteps_io import importers

    decode_file(files[0], load_config())  # warm-up: imports, caches
    race(
        files,
        "decode-only (pysteps importer)",
        lambda p: importers.import_knmi_hdf5(str(p)),
        "frames",
        args.repeats,
    )
    print("(92 KNMI frames 765 x 700)")


if __name__ == "__main__":
    main()
