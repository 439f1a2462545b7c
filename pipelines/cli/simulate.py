"""``motioncast simulate``: synthetic radar volumes, the embedded default's data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import Settings, command, console, fail, progress, start_time


def simulate(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the ODIM_H5 volumes.")],
    start: Annotated[
        str, typer.Option(help="First nominal time (UTC), e.g. 2026-06-01T12:00.")
    ] = "2026-06-01T12:00",
    minutes: Annotated[int, typer.Option(help="Length of the simulation.", min=0)] = 120,
    radars: Annotated[int, typer.Option(help="How many of the configured sites observe.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 0,
    clock: Annotated[
        Path | None,
        typer.Option(
            help="Live: write each time's volumes when this simulated clock (a file written by "
            "'motioncast up --simulate') reaches it.",
            exists=True,
        ),
    ] = None,
    network_dir: Annotated[
        Path | None, typer.Option(help="Where network.yaml goes (default: --out).")
    ] = None,
    *,
    settings: Settings,
) -> None:
    """Write synthetic radar volumes (one ODIM_H5 PVOL per radar every 5 minutes)."""
    from pipelines.simulate import simulate_network
    from pipelines.simulate.clock import SimClock
    from pipelines.simulate.network import NETWORK_CONFIG, NETWORK_DOMAIN

    cfg = settings.load()
    t0 = start_time(start)
    with progress() as bar:
        task = bar.add_task("simulating", total=minutes // cfg.simulate.interval_minutes + 1)
        try:
            paths = simulate_network(
                out_dir,
                t0,
                minutes,
                radars,
                seed,
                cfg.simulate,
                cfg.zr,
                on_cycle=lambda done, total: bar.update(task, completed=done),
                pace=SimClock.load(clock).wait_until if clock else None,
                config_dir=network_dir,
            )
        except ValueError as exc:
            fail(exc)
    console.print(f"wrote {len(paths)} volumes to {out_dir}")
    console.print(
        f"mosaic domain '{NETWORK_DOMAIN}': ingest with --config "
        f"{(network_dir or out_dir) / NETWORK_CONFIG}"
    )


def register(app: typer.Typer) -> None:
    command(app, simulate)
