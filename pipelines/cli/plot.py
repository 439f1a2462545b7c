"""``motioncast plot map|panel|gif``: maps, panels and animations from the stores."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import Settings, StoreOpt, command, fail, group, open_archive, out
from pipelines.config import MotioncastConfig

log = logging.getLogger(__name__)

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")]
PlotDomainOpt = Annotated[str | None, typer.Option(help="Domain (needed when several).")]
ForecastsOpt = Annotated[
    str | None,
    typer.Option("--forecasts", "-f", help="Forecast store (default: stores.forecasts.location)."),
]
IssueTimeOpt = Annotated[
    str | None,
    typer.Option("--issue-time", help="Issue time of the forecast (UTC); default: the latest."),
]


def _sites(cfg: MotioncastConfig):
    from pipelines.plots import Site

    return [Site(s.name, s.lon, s.lat) for s in cfg.plot.sites]


def _forecast_and_observed(cfg: MotioncastConfig, store, forecasts, domain, issue_time):
    """The forecast of ``domain`` issued at ``issue_time`` (None: the latest) and what the
    archive observed at its valid times (NaN where it holds no frame)."""
    import pandas as pd

    from pipelines.forecast.store import ForecastStore, ForecastStoreError
    from pipelines.store import ArchiveError
    from pipelines.store.timeaxis import FrameSelectError, parse_time
    from pipelines.verification.verify import observed_at

    try:
        when = parse_time(issue_time, "--issue-time") if issue_time else None
        fstore = ForecastStore.from_config(cfg.stores, forecasts)
        name = domain or fstore.resolve_domain(None)
        f = fstore.forecast(name, when)
        frames = open_archive(store, cfg).dataset(name)
    except (ArchiveError, ForecastStoreError, FrameSelectError) as exc:
        fail(exc)
    valid = pd.DatetimeIndex([f.issue_time + pd.Timedelta(minutes=int(m)) for m in f.lead_minutes])
    return f, observed_at(frames, valid)


def _check_leads(steps: list[int], n: int) -> None:
    if any(k > n for k in steps):
        fail(f"--lead {max(steps)}: the forecast has {n} leads")


def _duration(delta) -> str:
    minutes = delta.total_seconds() / 60
    return f"{minutes:g} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def plot_map(
    out_png: OutOpt,
    store: StoreOpt = None,
    domain: PlotDomainOpt = None,
    time: Annotated[
        str,
        typer.Option(
            help="Observed frame's time (UTC), or 'last'. With no frame exactly then, the nearest "
            "one (a warning says which); a time more than one step outside the archive is refused."
        ),
    ] = "last",
    forecast: Annotated[
        bool, typer.Option("--forecast", help="Map a forecast instead of an observed frame.")
    ] = False,
    forecasts: ForecastsOpt = None,
    issue_time: IssueTimeOpt = None,
    lead: Annotated[
        int | None, typer.Option(help="--forecast: lead step (1-based); default the last.", min=1)
    ] = None,
    *,
    settings: Settings,
) -> None:
    """A rain-rate map (PNG) of an observed frame, or with --forecast of one lead of a forecast,
    in the domain's projection with a lon/lat graticule and the radar sites (plot.sites); print
    its path."""
    from pipelines.grid import Grid
    from pipelines.plots import forecast_title, rain_map
    from pipelines.store import ArchiveError
    from pipelines.store.timeaxis import FrameSelectError, parse_time, select_frame

    cfg = settings.load()
    if forecast:
        f, _ = _forecast_and_observed(cfg, store, forecasts, domain, issue_time)
        step = len(f.lead_minutes) if lead is None else lead
        _check_leads([step], len(f.lead_minutes))
        title = forecast_title(f, step)
        out.print(str(rain_map(f.values[step - 1], f.grid, out_png, title, _sites(cfg))))
        return
    try:
        parse_time(time)  # a bad --time is refused before the store is opened
        ds = open_archive(store, cfg).dataset(domain)
        chosen = select_frame(ds, time)
    except (ArchiveError, FrameSelectError) as exc:
        fail(exc)
    name = ds.attrs.get("domain", domain)
    if not chosen.exact:
        log.warning(
            "no frame of %s at %s: plotting the nearest one, %s (%s away)",
            name,
            f"{chosen.requested:%Y-%m-%d %H:%M}",
            f"{chosen.time:%Y-%m-%d %H:%M}",
            _duration(abs(chosen.time - chosen.requested)),
        )
    values = ds.precip.isel(time=chosen.index).values
    grid = Grid.from_coords(ds.crs.attrs["crs_wkt"], ds.x.values, ds.y.values)
    title = f"{name}  {chosen.time:%Y-%m-%d %H:%M} UTC  observed"
    out.print(str(rain_map(values, grid, out_png, title, _sites(cfg))))


def plot_panel(
    out_png: OutOpt,
    store: StoreOpt = None,
    forecasts: ForecastsOpt = None,
    domain: PlotDomainOpt = None,
    issue_time: IssueTimeOpt = None,
    leads: Annotated[
        list[int] | None,
        typer.Option("--lead", help="Lead steps to show (1-based); repeat.", min=1),
    ] = None,
    *,
    settings: Settings,
) -> None:
    """A forecast beside what was observed at several leads (PNG); print its path."""
    from pipelines.plots import forecast_panel

    cfg = settings.load()
    f, observed = _forecast_and_observed(cfg, store, forecasts, domain, issue_time)
    n = len(f.lead_minutes)
    steps = leads or sorted({1, max(1, n // 2), n})
    _check_leads(steps, n)
    out.print(str(forecast_panel(f, observed, steps, out_png, _sites(cfg))))


def plot_gif(
    out_gif: Annotated[Path, typer.Option("--out", "-o", help="GIF file to write.")],
    store: StoreOpt = None,
    forecasts: ForecastsOpt = None,
    domain: PlotDomainOpt = None,
    issue_time: IssueTimeOpt = None,
    *,
    settings: Settings,
) -> None:
    """An animated GIF of a forecast's leads beside what was observed; print its path."""
    from pipelines.plots import forecast_gif

    cfg = settings.load()
    f, observed = _forecast_and_observed(cfg, store, forecasts, domain, issue_time)
    path = forecast_gif(f, observed, out_gif, _sites(cfg), cfg.plot.gif_frame_ms)
    out.print(str(path))


def register(app: typer.Typer) -> None:
    plots = group(app, "plot", "Maps, panels and animations from the stores.")
    command(plots, plot_map, "map")
    command(plots, plot_panel, "panel")
    command(plots, plot_gif, "gif")
