"""``motioncast archive info``: what the archive holds."""

from __future__ import annotations

import json

import typer
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
    table = Table(title=f"archive {store}")
    for col in ("domain", "grid (ny x nx @ res)", "CRS", "first", "last", "frames", "missing"):
        table.add_column(col)
    for s in summaries:
        d = s.as_dict()
        missing = str(d["n_missing"])
        if s.missing:
            missing += " (" + ", ".join(t.strftime("%m-%d %H:%M") for t in s.missing[:3])
            missing += ", ...)" if len(s.missing) > 3 else ")"
        unit = "deg" if s.grid.crs.is_geographic else "m"
        table.add_row(
            s.domain,
            f"{s.grid.ny} x {s.grid.nx} @ {s.grid.dx:g} {unit}",
            s.grid.proj4.split()[0] if s.grid.crs.name == "unknown" else s.grid.crs.name,
            str(s.start),
            str(s.end),
            str(s.n_frames),
            missing,
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    command(group(app, "archive", "Inspect the archive store."), archive_info, "info")
