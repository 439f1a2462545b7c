"""Rain-rate pictures: a map, a forecast-beside-observation panel, an animated GIF.

Fields are drawn with pysteps' precipitation colour scale and legend in mm/h
(``pysteps.visualization.plot_precip_field``), in the domain's own projection: axes in projected
km, a lon/lat graticule computed with pyproj, the radar sites marked. Nothing is downloaded at
run time (cartopy's Natural Earth maps would be): no coastlines. Cells no radar sees are grey
(pysteps' "bad" colour), dry cells white.

    rain_map(values, grid, "map.png", "title", sites)
    forecast_panel(forecast, observed, [1, 3, 6, 12], "panel.png", sites)
    forecast_gif(forecast, observed, "forecast.gif", sites)
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ParamSpec, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from pipelines.grid import Grid  # noqa: E402
from pipelines.radar.pysteps_io import quiet  # noqa: E402

if TYPE_CHECKING:
    from pipelines.forecast.store import Forecast

# pyplot (which pysteps draws with) keeps global state: one figure is drawn at a time, even when
# the forecast service renders maps in several threads
PYPLOT = threading.RLock()
P = ParamSpec("P")
R = TypeVar("R")
GRATICULE_STEPS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # degrees; the first giving 2-6 lines
DPI = 100


@dataclass(frozen=True)
class Site:
    """A radar site to mark on maps."""

    name: str
    lon: float
    lat: float


def _geodata(grid: Grid) -> dict[str, object]:
    xmin, ymin, xmax, ymax = grid.extent
    return {
        "projection": grid.proj4,
        "x1": xmin,
        "y1": ymin,
        "x2": xmax,
        "y2": ymax,
        "yorigin": "upper",
    }


def _graticule(ax, grid: Grid) -> None:
    """Lines of equal longitude and latitude over the field, labelled in degrees."""
    step = max(1, min(grid.nx, grid.ny) // 60)  # a coarse copy of the grid is enough
    x, y = grid.x[::step], grid.y[::step]
    lon, lat = grid.lonlat_of(*np.meshgrid(x, y))
    for values, suffix in ((lon, "°E"), (lat, "°N")):
        span = float(np.nanmax(values) - np.nanmin(values))
        degrees = next((s for s in GRATICULE_STEPS if span / s <= 6), GRATICULE_STEPS[-1])
        first = np.ceil(np.nanmin(values) / degrees) * degrees
        levels = np.arange(first, np.nanmax(values), degrees)
        if len(levels) == 0:
            continue
        lines = ax.contour(x, y, values, levels=levels, colors="0.25", linewidths=0.5, zorder=20)
        ax.clabel(lines, fmt=lambda v, s=suffix: f"{v:g}{s}", fontsize=7)


def _sites(ax, grid: Grid, sites: Sequence[Site]) -> None:
    for site in sites:
        if grid.contains_lonlat(site.lon, site.lat):
            x, y = grid.xy_of(site.lon, site.lat)
            ax.plot(x, y, "^", color="black", markersize=6, zorder=30)
            ax.annotate(
                site.name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, zorder=30
            )


def draw_rain(
    ax,
    values: np.ndarray,
    grid: Grid,
    title: str,
    sites: Sequence[Site] = (),
    colorbar: bool = True,
    cax=None,
) -> None:
    """One rain-rate field (ny, nx) in mm/h, NaN unknown, on ``ax``; its legend beside it, or
    in ``cax``."""
    from pysteps.visualization import plot_precip_field

    with quiet(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="cartopy package is required")
        plot_precip_field(
            np.asarray(values, dtype=float),
            ax=ax,
            geodata=_geodata(grid),
            units="mm/h",
            colorscale="pysteps",
            colorbar=colorbar,
            cax=cax,
        )
    ax.set_title(title, fontsize=9)
    km = FuncFormatter(lambda v, _: f"{v / 1e3:g}")
    ax.xaxis.set_major_formatter(km)
    ax.yaxis.set_major_formatter(km)
    ax.set_xlabel("x (km)", fontsize=8)
    ax.set_ylabel("y (km)", fontsize=8)
    ax.tick_params(labelsize=7)
    _graticule(ax, grid)
    _sites(ax, grid, sites)


def one_figure_at_a_time(draw: Callable[P, R]) -> Callable[P, R]:
    """Decorate a function that draws with pyplot: it holds ``PYPLOT`` while it draws, and a
    failed drawing leaves no figure open."""

    @functools.wraps(draw)
    def serialised(*args: P.args, **kwargs: P.kwargs) -> R:
        with PYPLOT:
            try:
                return draw(*args, **kwargs)
            except BaseException:
                plt.close("all")  # a failed drawing leaves no figure behind in a long process
                raise

    return serialised


def save_figure(fig, out: Path | BinaryIO, fmt: str = "png") -> Path | BinaryIO:
    """Write ``fig`` to a path (its folder made) or a binary file, and close it."""
    if isinstance(out, str | Path):
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format=fmt)
    plt.close(fig)
    return out


@one_figure_at_a_time
def rain_map(
    values: np.ndarray, grid: Grid, out: Path | BinaryIO, title: str, sites: Sequence[Site] = ()
) -> Path | BinaryIO:
    """A map of one field as PNG, to a path or a binary file."""
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=DPI)
    draw_rain(ax, values, grid, title, sites)
    fig.tight_layout()
    return save_figure(fig, out)


def forecast_title(f: Forecast, step: int | None = None) -> str:
    """What a picture of a forecast shows: domain, method and model, issue time, and the lead of
    step ``step`` (1-based) when it shows one lead."""
    title = f"{f.domain}: {f.made_by} issued {f.issue_time:%Y-%m-%d %H:%M} UTC"
    return title if step is None else f"{title} +{int(f.lead_minutes[step - 1])} min"


def _lead_title(f: Forecast, k: int) -> str:
    valid = f.issue_time + np.timedelta64(int(f.lead_minutes[k]), "m")
    return f"+{int(f.lead_minutes[k])} min, valid {valid:%H:%M}"


@one_figure_at_a_time
def forecast_panel(
    f: Forecast,
    observed: np.ndarray | None,
    steps: Sequence[int],
    out: Path | BinaryIO,
    sites: Sequence[Site] = (),
) -> Path | BinaryIO:
    """The forecast (top row) beside the observation (bottom row, when given: (leads, ny, nx),
    NaN where not observed) at lead steps ``steps`` (1-based)."""
    rows = 1 if observed is None else 2
    fig, axes = plt.subplots(
        rows, len(steps), figsize=(3.6 * len(steps), 3.3 * rows), dpi=DPI, squeeze=False
    )
    fig.suptitle(forecast_title(f), fontsize=10)
    for col, step in enumerate(steps):
        k = step - 1
        last = col == len(steps) - 1
        draw_rain(axes[0, col], f.values[k], f.grid, f"forecast {_lead_title(f, k)}", sites, last)
        if observed is not None:
            draw_rain(
                axes[1, col], observed[k], f.grid, f"observed {_lead_title(f, k)}", sites, last
            )
    fig.tight_layout()
    return save_figure(fig, out)


@one_figure_at_a_time
def forecast_gif(
    f: Forecast,
    observed: np.ndarray | None,
    out: Path,
    sites: Sequence[Site] = (),
    frame_ms: int = 600,
) -> Path:
    """An animated GIF of every lead: the forecast beside the observation (when given)."""
    panels = 1 if observed is None else 2
    fig = plt.figure(figsize=(5.0 * panels + 0.8, 4.6), dpi=80)
    grid_spec = fig.add_gridspec(1, panels + 1, width_ratios=[1] * panels + [0.05])
    axes = [fig.add_subplot(grid_spec[0, i]) for i in range(panels)]
    cax = fig.add_subplot(grid_spec[0, panels])  # one legend, redrawn in place each frame
    fields = [(f.values, f.method)] + ([] if observed is None else [(observed, "observed")])

    def frame(k: int) -> None:
        for ax in (*axes, cax):
            ax.clear()
        for i, (values, what) in enumerate(fields):
            last = i == len(fields) - 1
            draw_rain(
                axes[i],
                values[k],
                f.grid,
                f"{what} {_lead_title(f, k)}",
                sites,
                last,
                cax if last else None,
            )
        fig.suptitle(forecast_title(f), fontsize=10)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    animation = FuncAnimation(fig, frame, frames=len(f.lead_minutes), interval=frame_ms)
    animation.save(out, writer=PillowWriter(fps=1000.0 / frame_ms))
    plt.close(fig)
    return out
