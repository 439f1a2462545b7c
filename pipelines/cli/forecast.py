"""``motioncast forecast``: issue forecasts into the forecast store, as the cycle does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import (
    Settings,
    StoreOpt,
    command,
    console,
    fail,
    locations,
    open_archive,
    out,
)


def forecast(
    store: StoreOpt = None,
    forecasts: Annotated[
        str | None,
        typer.Option(
            "--forecasts",
            "-f",
            help="Forecast store (default: stores.forecasts.location); created if new.",
        ),
    ] = None,
    registry: Annotated[
        Path | None,
        typer.Option("--registry", "-r", help="Model registry (default: forecast.registry)."),
    ] = None,
    domain: Annotated[
        list[str] | None, typer.Option(help="Archive domain; repeat for several. Default: all.")
    ] = None,
    issue_time: Annotated[
        str | None,
        typer.Option(
            "--issue-time",
            help="Time of the last input frame (UTC, e.g. 2026-06-01T12:00); "
            "default: the newest complete input window of each domain.",
        ),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="motionrnn (the promoted model), sprog, extrapolation or persistence "
            "(default: forecast.method)."
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="Make it again when that issue time is already stored.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summaries as JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Issue one forecast per domain into the forecast store: the code path of the forecast
    service and cycle, for scripts and backfills.

    Leads are every time step of the domain up to forecast.lead_minutes. An issue time already
    stored is left as it is (exit 0) unless --replace. Exit 1 when 'motionrnn' has no promoted
    model to use (the cycle falls back to extrapolation instead); exit 2 on bad input.
    """
    from pipelines.forecast.issue import ForecastError, issue
    from pipelines.forecast.store import ForecastStore, ForecastStoreError
    from pipelines.nowcast import NoModelError, from_config
    from pipelines.store.timeaxis import FrameSelectError, parse_time

    cfg = settings.load(
        stores=locations(archive=store, forecasts=forecasts),
        forecast={
            k: v for k, v in {"registry": registry, "method": method}.items() if v is not None
        },
    )
    f = cfg.forecast
    try:
        when = parse_time(issue_time, "--issue-time") if issue_time else None
    except FrameSelectError as exc:
        fail(exc)
    archive = open_archive(None, cfg)
    try:
        forecaster = from_config(f.method, cfg)
    except NoModelError as exc:
        fail(exc, 1)
    try:
        fstore = ForecastStore.from_config(cfg.stores, create=True)
    except ForecastStoreError as exc:
        fail(exc)
    summaries = []
    for name in domain or archive.domains():
        try:
            done = issue(
                archive, fstore, forecaster, name, f.frames_in, f.lead_minutes, when, replace
            )
        except (ForecastError, ForecastStoreError) as exc:
            fail(exc)
        made = done.forecast
        if as_json:
            summaries.append(done.summary(fstore))
        else:
            what = f" by {made.made_by}" if made else ""
            console.print(f"{name} {done.issue_time.isoformat()}: {done.result.status}{what}")
    if as_json:
        out.print_json(json.dumps(summaries, default=str))


def register(app: typer.Typer) -> None:
    command(app, forecast)
