"""``motioncast archive info``: what the archive holds."""

from __future__ import annotations

import json

import typer
from rich import box
from rich.table import Table

from pipelines.cli.common import JsonOpt, Settings, StoreOpt, command, group, open_archive, out


def archive_info(
    store: StoreOpt,
    as_json: JsonOpt = False,
    *,
    settings: Settings,
) -> None:
    """Per domain: grid, time range, frame count and missing time slots."""
    summaries = open_archive(store, settings.load()).summary()
    if as_json:
        out.print_json(json.dumps([s.as_dict() for s in summaries]))
        return
    table = Table(title=f"archive {store}", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("domain", "grid (ny x nx @ res), CRS", "first and last frame", "frames", "missing"):
        table.add_column(col, justify="right" if col in ("frames", "missing") else "left")
    gaps = []
    for s in summaries:
        unit = "deg" if s.grid.crs.is_geographic else "m"
        crs = s.grid.proj4.split()[0] if s.grid.crs.name == "unknown" else s.grid.crs.name
        table.add_row(
            s.domain,
            f"{s.grid.ny} x {s.grid.nx} @ {s.grid.dx:g} {unit}\n{crs}",
            "-" if s.start is None else f"{s.start:%Y-%m-%d %H:%M}\n{s.end:%Y-%m-%d %H:%M}",
            str(s.n_frames),
            str(len(s.missing)),
        )
        if s.missing:
            first = ", ".join(t.strftime("%m-%d %H:%M") for t in s.missing[:3])
            gaps.append(f"{s.domain}: missing {first}" + (", ..." if len(s.missing) > 3 else ""))
    out.print(table)
    for line in gaps:
        out.print(line)


def register(app: typer.Typer) -> None:
    command(group(app, "archive", "Inspect the archive store."), archive_info, "info")
