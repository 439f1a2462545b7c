"""``motioncast up``, ``down`` and ``status``: the whole system on this machine."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from pipelines.cli.common import JsonOpt, Settings, command, console, fail, out, start_time


def up(
    simulate: Annotated[
        bool,
        typer.Option(
            help="Also run the synthetic radar network, writing into the inbox on an "
            "accelerated clock that the forecast cycle follows."
        ),
    ] = False,
    speed: Annotated[
        float, typer.Option(help="--simulate: simulated seconds per second.", min=1.0)
    ] = 10.0,
    start: Annotated[str, typer.Option(help="--simulate: first volumes' time (UTC).")] = (
        "2026-06-01T12:00"
    ),
    minutes: Annotated[int, typer.Option(help="--simulate: simulated minutes to run.")] = 1440,
    *,
    settings: Settings,
) -> None:
    """Start the whole system here, supervised (a process that exits is restarted with
    backoff): Prefect's server (127.0.0.1), Ray with the forecast service, and the scheduled
    flows (forecast cycle every 5 minutes, store maintenance daily, inbox ingest); say where
    everything is. On a failure or Ctrl-C, what was started is stopped. 'motioncast down' stops
    it. The API token, if any, comes from MOTIONCAST_API_TOKEN or serve.token_file."""
    from flows.local import LocalSystemError, Simulation
    from flows.local import up as start_system

    cfg = settings.load()
    simulation = None
    if simulate:
        first = start_time(start)
        # a backlog of one input window, so that the first cycle has its inputs
        backlog = cfg.forecast.frames_in * cfg.simulate.interval_minutes
        simulation = Simulation(first, speed, backlog, minutes)
    with console.status("starting Prefect's server, Ray and the forecast service"):
        try:
            state = start_system(cfg, settings.file, settings.overrides, simulation)
        except LocalSystemError as exc:
            fail(exc, 1)
    table = Table(title="motioncast is up", show_header=False)
    for key in ("service", "prefect_ui", "archive", "forecasts", "registry", "inbox", "logs"):
        table.add_row(key, str(state[key]))
    if state["clock"]:
        table.add_row("simulated clock", f"{state['clock']} ({speed:g} x from {start})")
    out.print(table)


def down(*, settings: Settings) -> None:
    """Stop what 'motioncast up' started (the flows, the service, Ray, Prefect's server)."""
    from flows.local import down as stop

    stopped = stop(settings.load())
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was up")


def status(
    as_json: JsonOpt = False,
    *,
    settings: Settings,
) -> None:
    """What runs (processes, service, Prefect) and the last forecasts issued."""
    from flows.local import status as look

    found = look(settings.load())
    if as_json:
        out.print_json(json.dumps(found))
        return
    table = Table(title="motioncast " + ("is up" if found["up"] else "is down"), show_header=False)
    restarts = found.get("restarts", {})
    for name, alive in found.get("processes", {}).items():
        again = f" (restarted {restarts[name]} x)" if restarts.get(name) else ""
        table.add_row(name, ("running" if alive else "[red]not running[/red]") + again)
    if "simulated_time" in found:
        table.add_row("simulated time", found["simulated_time"])
    for key, label in (("service_answers", "service"), ("prefect_answers", "Prefect")):
        if key in found:
            table.add_row(label, "answers" if found[key] else "[red]does not answer[/red]")
    for item in found["last_forecasts"]:
        table.add_row(item["at"], item["what"])
    out.print(table)


def register(app: typer.Typer) -> None:
    for verb in (up, down, status):
        command(app, verb)
