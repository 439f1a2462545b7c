"""The ``motioncast`` command line: one verb per stage of the system."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from pipelines.config import ConfigError, MotioncastConfig, load_config

app = typer.Typer(
    help="motioncast: radar precipitation nowcasting with MotionRNN.\n\n"
    "Every verb reads the default configuration, then --config FILE, then --set key=value "
    "overrides, then its own flags.",
    no_args_is_help=True,
    add_completion=False,
)
archive_app = typer.Typer(help="Inspect the archive store.", no_args_is_help=True)
app.add_typer(archive_app, name="archive")
plot_app = typer.Typer(help="Maps, panels and animations from the stores.", no_args_is_help=True)
app.add_typer(plot_app, name="plot")
models_app = typer.Typer(help="The model registry: list, inspect, promote.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console(stderr=True, soft_wrap=True)  # one error, one line, even when piped
out = Console(soft_wrap=True)
if not out.is_terminal:  # piped or logged: tables as wide as they need, not 80 columns
    out.width = 160

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML configuration file.", exists=True)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one setting, e.g. --set ingest.batch_size=16."),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")]
StoreOpt = Annotated[
    str,
    typer.Option(
        "--store",
        "-s",
        help="Archive store: a folder or s3://bucket/prefix (store.object_storage, AWS_* vars).",
    ),
]


def _setup(
    config: Path | None, overrides: list[str] | None, verbose: bool, **sections: object
) -> MotioncastConfig:
    handler = (
        RichHandler(console=console, show_path=False, show_time=False)
        if console.is_terminal
        else logging.StreamHandler()  # logs and cron mails get plain, unwrapped lines
    )
    handler.setFormatter(
        logging.Formatter(
            "%(message)s" if console.is_terminal else "%(asctime)s %(levelname)s %(message)s"
        )
    )
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True
    )
    for noisy in ("distributed", "prefect", "asyncio", "numcodecs", "h5py", "matplotlib", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return load_config(config, overrides, **sections)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


@app.command()
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
    config: ConfigOpt = None,
    set_: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Write synthetic radar volumes (one ODIM_H5 PVOL per radar every 5 minutes)."""
    from pipelines.simulate import simulate_network
    from pipelines.simulate.clock import SimClock
    from pipelines.simulate.network import NETWORK_CONFIG, NETWORK_DOMAIN

    cfg = _setup(config, set_, verbose)
    try:
        t0 = pd.Timestamp(start)
    except ValueError:
        console.print(f"[red]error:[/red] --start {start!r} is not a time")
        raise typer.Exit(2) from None
    with _progress() as progress:
        task = progress.add_task("simulating", total=minutes // cfg.simulate.interval_minutes + 1)
        try:
            paths = simulate_network(
                out_dir,
                t0,
                minutes,
                radars,
                seed,
                cfg.simulate,
                cfg.zr,
                on_cycle=lambda done, total: progress.update(task, completed=done),
                pace=SimClock.load(clock).wait_until if clock else None,
                config_dir=network_dir,
            )
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    console.print(f"wrote {len(paths)} volumes to {out_dir}")
    console.print(
        f"mosaic domain '{NETWORK_DOMAIN}': ingest with --config "
        f"{(network_dir or out_dir) / NETWORK_CONFIG}"
    )


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively).")],
    store: StoreOpt = None,
    domain: Annotated[
        str | None, typer.Option(help="Put every frame on this configured domain.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Decoding processes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Decode radar files (composites or volumes) into the archive store.

    Bad files are reported one line each and copied to the quarantine folder with the reason;
    the good ones still land. Exit code 1 when any file failed.
    """
    from pipelines.ingest import discover
    from pipelines.ingest import ingest as run_ingest
    from pipelines.ingest.decode import check_domain
    from pipelines.store.repository import StoreError, check_location

    cfg = _setup(
        config,
        set_,
        verbose,
        store={"archive": store} if store else None,
        ingest={"workers": workers} if workers else None,
    )
    try:
        if domain is not None:
            check_domain(domain, cfg)
        check_location(cfg.store.archive)
        files = discover(paths)
        with _progress() as progress:
            task = progress.add_task("ingesting", total=len(files))
            result = run_ingest(
                paths, cfg, domain, files=files, on_file=lambda _: progress.advance(task)
            )
    except (FileNotFoundError, ValueError, StoreError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    else:
        added = ", ".join(f"{d}: {n}" for d, n in sorted(result.added.items())) or "none"
        same = sum(result.unchanged.values())
        console.print(
            f"{result.files} files: frames added {added}; replaced "
            f"{sum(result.replaced.values())}; already stored {same}; failed {len(result.failed)}"
        )
    raise typer.Exit(0 if result.ok else 1)


def _open(store: str, cfg: MotioncastConfig):
    from pipelines.store import Archive, ArchiveError

    try:
        return Archive(store, storage=cfg.store.object_storage)
    except ArchiveError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@archive_app.command("info")
def archive_info(
    store: StoreOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Per domain: grid, time range, frame count and missing time slots."""
    summaries = _open(store, _setup(config, set_, verbose)).summary()
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


def _sites(cfg: MotioncastConfig):
    from pipelines.plots import Site

    return [Site(s.name, s.lon, s.lat) for s in cfg.plot.sites]


def _forecast_and_observed(cfg: MotioncastConfig, store, forecasts, domain, issue_time):
    """The forecast of ``domain`` issued at ``issue_time`` (None: the latest) and what the
    archive observed at its valid times (NaN where it holds no frame)."""
    from pipelines.forecast.store import ForecastStore, ForecastStoreError
    from pipelines.frame_select import FrameSelectError, parse_time
    from pipelines.store import ArchiveError
    from pipelines.verification.verify import observed_at

    try:
        when = parse_time(issue_time, "--issue-time") if issue_time else None
        fstore = ForecastStore(forecasts or cfg.forecast.store, storage=cfg.store.object_storage)
        name = domain or fstore.resolve_domain(None)
        f = fstore.forecast(name, when)
        frames = _open(store or cfg.store.archive, cfg).dataset(name)
    except (ArchiveError, ForecastStoreError, FrameSelectError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    valid = pd.DatetimeIndex([f.issue_time + pd.Timedelta(minutes=int(m)) for m in f.lead_minutes])
    return f, observed_at(frames, valid)


PlotDomainOpt = Annotated[str | None, typer.Option(help="Domain (needed when several).")]
ForecastsOpt = Annotated[
    str | None,
    typer.Option("--forecasts", "-f", help="Forecast store (default: forecast.store)."),
]
IssueTimeOpt = Annotated[
    str | None,
    typer.Option("--issue-time", help="Issue time of the forecast (UTC); default: the latest."),
]


@plot_app.command("map")
def plot_map(
    out_png: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
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
    config: ConfigOpt = None,
    set_: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """A rain-rate map (PNG) of an observed frame, or with --forecast of one lead of a forecast,
    in the domain's projection with a lon/lat graticule and the radar sites (plot.sites); print
    its path."""
    from pipelines.frame_select import FrameSelectError, parse_time, select_frame
    from pipelines.grid import Grid
    from pipelines.plots import forecast_title, rain_map
    from pipelines.store import ArchiveError

    cfg = _setup(config, set_, verbose)
    if forecast:
        f, _ = _forecast_and_observed(cfg, store, forecasts, domain, issue_time)
        n = len(f.lead_minutes)
        step = n if lead is None else lead
        if step > n:
            console.print(f"[red]error:[/red] --lead {step}: the forecast has {n} leads")
            raise typer.Exit(2)
        title = forecast_title(f, step)
        out.print(str(rain_map(f.values[step - 1], f.grid, out_png, title, _sites(cfg))))
        return
    try:
        parse_time(time)  # a bad --time is refused before the store is opened
        ds = _open(store or cfg.store.archive, cfg).dataset(domain)
        chosen = select_frame(ds, time)
    except (ArchiveError, FrameSelectError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")  # --time text is not markup
        raise typer.Exit(2) from None
    name = ds.attrs.get("domain", domain)
    if not chosen.exact:
        logging.getLogger(__name__).warning(
            "no frame of %s at %s: plotting the nearest one, %s (%s away)",
            name,
            f"{chosen.requested:%Y-%m-%d %H:%M}",
            f"{chosen.time:%Y-%m-%d %H:%M}",
            _minutes(abs(chosen.time - chosen.requested)),
        )
    values = ds.precip.isel(time=chosen.index).values
    grid = Grid.from_coords(ds.crs.attrs["crs_wkt"], ds.x.values, ds.y.values)
    title = f"{name}  {chosen.time:%Y-%m-%d %H:%M} UTC  observed"
    out.print(str(rain_map(values, grid, out_png, title, _sites(cfg))))


@plot_app.command("panel")
def plot_panel(
    out_png: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    store: StoreOpt = None,
    forecasts: ForecastsOpt = None,
    domain: PlotDomainOpt = None,
    issue_time: IssueTimeOpt = None,
    leads: Annotated[
        list[int] | None,
        typer.Option("--lead", help="Lead steps to show (1-based); repeat.", min=1),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """A forecast beside what was observed at several leads (PNG); print its path."""
    from pipelines.plots import forecast_panel

    cfg = _setup(config, set_, verbose)
    f, observed = _forecast_and_observed(cfg, store, forecasts, domain, issue_time)
    n = len(f.lead_minutes)
    steps = leads or sorted({1, max(1, n // 2), n})
    if any(k > n for k in steps):
        console.print(f"[red]error:[/red] --lead {max(steps)}: the forecast has {n} leads")
        raise typer.Exit(2)
    out.print(str(forecast_panel(f, observed, steps, out_png, _sites(cfg))))


@plot_app.command("gif")
def plot_gif(
    out_gif: Annotated[Path, typer.Option("--out", "-o", help="GIF file to write.")],
    store: StoreOpt = None,
    forecasts: ForecastsOpt = None,
    domain: PlotDomainOpt = None,
    issue_time: IssueTimeOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """An animated GIF of a forecast's leads beside what was observed; print its path."""
    from pipelines.plots import forecast_gif

    cfg = _setup(config, set_, verbose)
    f, observed = _forecast_and_observed(cfg, store, forecasts, domain, issue_time)
    path = forecast_gif(f, observed, out_gif, _sites(cfg), cfg.plot.gif_frame_ms)
    out.print(str(path))


def _minutes(delta: pd.Timedelta) -> str:
    minutes = delta.total_seconds() / 60
    return f"{minutes:g} min" if minutes < 120 else f"{minutes / 60:.1f} h"


RegistryOpt = Annotated[Path, typer.Option("--registry", "-r", help="Model registry folder.")]


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _TrainingDisplay:
    """What the train verb shows of rank 0's progress (``StepEvent``s): on a terminal one live
    line (the budget spent, step, training loss, the latest validation CSI at 1 mm/h of the
    model and of the baselines, the time left of the budget); piped or logged, one log line per
    validation."""

    def __init__(self, max_steps: int):
        self.max_steps = max_steps
        self.live = console.is_terminal
        self.csi = "-"
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=16),
            TextColumn("step {task.fields[step]}/{task.fields[max_steps]}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("CSI 1 mm/h: {task.fields[csi]}"),
            TextColumn("{task.fields[left]}"),
            console=console,
        )
        self.task = self.progress.add_task(
            "starting", total=1.0, step=0, max_steps=max_steps, loss="-", csi="-", left=""
        )

    def __enter__(self) -> _TrainingDisplay:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def __call__(self, event) -> None:  # a pipelines.training.progress.StepEvent
        if event.validation is not None:
            model, sprog, extrapolation = (
                _score(event.score(m)) for m in ("model", "sprog", "extrapolation")
            )
            self.csi = f"model {model}, S-PROG {sprog}, extrap. {extrapolation}"
        left = event.time_left_s
        fields = {
            "step": event.step,
            "loss": "-" if event.train_loss is None else f"{event.train_loss:.4f}",
            "csi": self.csi,
            "left": "" if left is None else f"{_clock(left)} left",
        }
        if self.live:
            done = min(event.budget, 1.0)
            self.progress.update(self.task, description="training", completed=done, **fields)
        elif event.validation is not None:
            logging.getLogger(__name__).info(
                "step %d/%d: training loss %s; validation CSI 1 mm/h: %s; %s",
                event.step,
                self.max_steps,
                fields["loss"],
                self.csi,
                fields["left"] or "time left unknown",
            )


@app.command()
def train(
    store: StoreOpt,
    registry: RegistryOpt,
    workers: Annotated[
        int | None, typer.Option(help="Training workers (DDP processes).", min=1)
    ] = None,
    gpu: Annotated[bool | None, typer.Option("--gpu/--cpu", help="One GPU per worker.")] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Time budget of the training loop.", min=0)
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Step budget.", min=1)] = None,
    run_name: Annotated[
        str | None,
        typer.Option(help="Continue this run from its last checkpoint (default: a new run)."),
    ] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Train MotionRNN on the archive with Ray Train and register the model.

    Windows come from a pinned snapshot of the archive, split by time blocks; validation scores
    the model, pysteps extrapolation and persistence on the same windows every epoch. The run's
    checkpoints lie in training.scaling.storage/RUN: a failed worker resumes from the last one,
    and --run-name RUN continues a stopped run.
    """
    scaling = {"workers": workers, "use_gpu": gpu}
    cfg = _setup(
        config,
        overrides,
        verbose,
        training={
            "scaling": {k: v for k, v in scaling.items() if v is not None},
            **({"max_minutes": max_minutes} if max_minutes is not None else {}),
            **({"max_steps": max_steps} if max_steps is not None else {}),
        },
    )
    from pipelines.store.archive import ArchiveError
    from pipelines.training.run import TrainingError
    from pipelines.training.run import train as train_run
    from pipelines.training.validation import score_table

    try:
        with _TrainingDisplay(cfg.training.max_steps) as display:
            result = train_run(store, registry, cfg, run_name=run_name, on_progress=display)
    except (TrainingError, ArchiveError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    state, card = result.state, result.version.card
    table = Table(
        title=f"{result.version.version}: run {result.run_name}, {state.step} steps, "
        f"{state.elapsed_s / 60:.1f} min; registered: step {card['best_step']}, the best "
        "validation; every method on the same windows and cells"
    )
    metrics, rows = score_table(card["validation"])
    for col in ("method", *metrics):
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in rows:
        table.add_row(*row)
    out.print(table)
    out.print(
        f"registered {result.version.version} in {registry} (promote: motioncast models promote)"
    )


def _registry(path: Path):
    from pipelines.registry import Registry

    if not path.is_dir():
        console.print(f"[red]error:[/red] {path}: no model registry here")
        raise typer.Exit(2)
    return Registry(path)


@models_app.command("list")
def models_list(registry: RegistryOpt) -> None:
    """Registered versions with their validation scores; * marks the one in service."""
    reg = _registry(registry)
    promoted = reg.promoted()
    table = Table(title=f"models in {registry}")
    columns = ("", "version", "registered", "run", "CSI 1 mm/h", "MAE", "S-PROG CSI", "- S-PROG")
    for col in columns:
        table.add_column(col)
    for v in reg.versions():
        csi, mae, base = v.score(), v.score(metric="mae"), v.score("sprog")
        test = v.card.get("validation", {}).get("model", {}).get("paired")
        table.add_row(
            "*" if promoted and promoted.version == v.version else "",
            v.version,
            str(v.card.get("registered_at", ""))[:19],
            str(v.card.get("run", "")),
            "-" if csi is None else f"{csi:.3f}",
            "-" if mae is None else f"{mae:.3f}",
            "-" if base is None else f"{base:.3f}",
            "-"
            if not test
            else f"{test['difference']:+.3f} [{test['lower']:+.3f}, {test['upper']:+.3f}]",
        )
    out.print(table)


@models_app.command("show")
def models_show(version: str, registry: RegistryOpt) -> None:
    """The version's card (run, model config, data, validation scores) as JSON."""
    from pipelines.registry import RegistryError

    try:
        card = _registry(registry).get(version).card
    except RegistryError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    out.print_json(json.dumps(card, default=str))


@models_app.command("promote")
def models_promote(
    version: str,
    registry: RegistryOpt,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            "-s",
            help="Archive to score the candidate and the model in service on the candidate's "
            "validation windows, when their cards hold different ones.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Promote even if it does not beat S-PROG or the current one.")
    ] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Put a version in service. Refused unless it beats pysteps S-PROG on its validation
    windows (a paired bootstrap over them: the lower end of the 95 % interval of its mean CSI
    at 1 mm/h minus S-PROG's above zero), or if it scores below the version in service on the
    same windows."""
    from pipelines.registry import RegistryError

    cfg = _setup(config, overrides, verbose)
    reg = _registry(registry)
    if store is not None:
        _open(store, cfg)  # one line and exit 2 for what is not an archive
    try:
        rescored = None
        if store is not None and not force:
            rescored = _rescore(reg, version, store, cfg)
        reg.promote(version, force=force, rescored=rescored)
    except RegistryError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"{version} is in service")


def _rescore(reg, version: str, store: str, cfg: MotioncastConfig) -> dict | None:
    """The candidate and the version in service scored on the candidate's validation windows;
    None when there is nothing to compare again (none in service, or the same windows)."""
    from motionrnn import load_checkpoint
    from pipelines.config import TrainingConfig
    from pipelines.registry import PROMOTION_METRIC, RegistryError
    from pipelines.training.evaluate import score_models
    from pipelines.training.windows import Window

    candidate, current = reg.get(version), reg.promoted()
    if current is None or current.version == version:
        return None
    windows = candidate.card.get("validation_windows")
    if windows is None or windows == current.card.get("validation_windows"):
        return None
    t = TrainingConfig.model_validate(
        {**candidate.card["training"], "model": candidate.card["model_config"]}
    )
    models = {v.version: load_checkpoint(v.checkpoint) for v in (candidate, current)}
    frames = {(m.config.frames_in, m.config.frames_out) for m in models.values()}
    if len(frames) > 1:
        raise RegistryError(
            f"{version} and {current.version} take different frames: they cannot be scored on "
            "the same windows (use --force)"
        )
    scores = score_models(
        store,
        [Window.from_json(w) for w in windows],
        models,
        t,
        snapshot=candidate.card["data"]["snapshot"],
        baselines=[],
        storage=cfg.store.object_storage,
    )
    return {name: scores[name].summary().get(PROMOTION_METRIC) for name in models}


@app.command()
def forecast(
    store: StoreOpt = None,
    forecasts: Annotated[
        str | None,
        typer.Option(
            "--forecasts", "-f", help="Forecast store (default: forecast.store); created if new."
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
    config: ConfigOpt = None,
    set_: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Issue one forecast per domain into the forecast store: the code path of the forecast
    service and cycle, for scripts and backfills.

    Leads are every time step of the domain up to forecast.lead_minutes. An issue time already
    stored is left as it is (exit 0) unless --replace. Exit 1 when 'motionrnn' has no promoted
    model to use (the cycle falls back to extrapolation instead); exit 2 on bad input.
    """
    from pipelines.forecast.issue import ForecastError, issue
    from pipelines.forecast.methods import NoModelError, get_forecaster
    from pipelines.forecast.store import ForecastStore, ForecastStoreError
    from pipelines.frame_select import FrameSelectError, parse_time

    cfg = _setup(
        config,
        set_,
        verbose,
        store={"archive": store} if store else None,
        forecast={
            k: v
            for k, v in {"store": forecasts, "registry": registry, "method": method}.items()
            if v is not None
        },
    )
    f = cfg.forecast
    try:
        when = parse_time(issue_time, "--issue-time") if issue_time else None
    except FrameSelectError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    archive = _open(cfg.store.archive, cfg)
    try:
        forecaster = get_forecaster(
            f.method, f.registry, cfg.training.data.transform, precision=f.precision
        )
    except NoModelError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    try:
        fstore = ForecastStore(
            f.store,
            f.chunk_yx,
            f.compression_level,
            create=True,
            storage=cfg.store.object_storage,
        )
    except ForecastStoreError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    summaries = []
    for name in domain or archive.domains():
        try:
            done = issue(
                archive, fstore, forecaster, name, f.frames_in, f.lead_minutes, when, replace
            )
        except (ForecastError, ForecastStoreError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        made = done.forecast
        if as_json:
            summaries.append(done.summary(fstore))
        else:
            what = f" by {made.made_by}" if made else ""
            console.print(f"{name} {done.issue_time.isoformat()}: {done.result.status}{what}")
    if as_json:
        out.print_json(json.dumps(summaries, default=str))


@app.command()
def verify(
    store: StoreOpt = None,
    forecasts: Annotated[
        str | None,
        typer.Option("--forecasts", "-f", help="Forecast store (default: forecast.store)."),
    ] = None,
    scores: Annotated[
        str | None,
        typer.Option("--scores", help="Scores store (default: verify.store); created if new."),
    ] = None,
    domain: Annotated[
        list[str] | None, typer.Option(help="Domain; repeat for several. Default: all.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="First issue time pooled (UTC ISO); default: the first.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last issue time pooled (UTC ISO); default: the last.")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder of the skill plots (PNG).")] = Path(
        "verification"
    ),
    score: Annotated[
        bool,
        typer.Option(
            "--score/--no-score", help="Score what is due before reporting (as the flow does)."
        ),
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the pooled scores as JSON.")
    ] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Verify the issued forecasts and report a period.

    First scores every stored forecast whose valid times the archive has observed and that is not
    scored yet, with verify.baselines run on its input frames, every method on the same cells
    (observed, and valued by all; unknown never counts as dry), into the scores store. Then pools
    [--since, --until] per domain and method with pysteps' merge functions and prints a table
    (CSI at verify.thresholds_mm_h; POD, FAR and frequency bias at 1 mm/h; FSS; MAE, RMSE, ME),
    and writes per domain CSI and frequency bias against lead time, FSS against scale and MAE
    against lead time into --out. Exit 2 on bad input.
    """
    from pipelines.forecast.store import ForecastStore
    from pipelines.frame_select import FrameSelectError, parse_time
    from pipelines.store.repository import StoreError
    from pipelines.verification.report import score_table, skill_plots
    from pipelines.verification.store import ScoresStore
    from pipelines.verification.verify import verify as score_due

    cfg = _setup(
        config,
        set_,
        verbose,
        store={"archive": store} if store else None,
        forecast={"store": forecasts} if forecasts else None,
        verify={"store": scores} if scores else None,
    )
    try:
        start = parse_time(since, "--since") if since else None
        end = parse_time(until, "--until") if until else None
        if score:
            with _progress() as progress:
                task = progress.add_task("scoring", total=None)

                def advance(name: str, done: int, total: int) -> None:
                    progress.update(
                        task, description=f"scoring {name}", completed=done, total=total
                    )

                outcomes = score_due(cfg, domain, on_scored=advance)
            for o in outcomes:
                console.print(
                    f"{o.domain}: not verified: {escape(o.error)}"
                    if o.error
                    else f"{o.domain}: {o.scored} scored, {o.waiting} wait for observations"
                )
        scored = ScoresStore(cfg.verify.store, storage=cfg.store.object_storage)
        fstore = ForecastStore(cfg.forecast.store, storage=cfg.store.object_storage)
        have = scored.domains()
        names = [d for d in domain or have if d in have]
        pooled = [scored.pool(d, start, end) for d in names]
        steps = {d: int(fstore.dataset(d).attrs["time_step_minutes"]) for d in names}
    except (FrameSelectError, StoreError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    pooled = [p for p in pooled if p.issues]
    if not pooled:
        console.print("no scored forecasts in that period")
        return
    if as_json:
        report = {p.domain: {m: s.summary() for m, s in p.scores.items()} for p in pooled}
        out.print_json(json.dumps(report))
        return
    out.print(score_table(pooled))
    for p in pooled:
        made = ", ".join(f"{k} ({v})" for k, v in p.issued_methods.items())
        out.print(f"{p.domain}: issued by {made}")
        for path in skill_plots(p, out_dir, steps[p.domain]):
            out.print(f"  {path}")


@app.command()
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
    config: ConfigOpt = None,
    set_: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Start the whole system here, supervised (a process that exits is restarted with
    backoff): Prefect's server (127.0.0.1), Ray with the forecast service, and the scheduled
    flows (forecast cycle every 5 minutes, store maintenance daily, inbox ingest); say where
    everything is. On a failure or Ctrl-C, what was started is stopped. 'motioncast down' stops
    it. The API token, if any, comes from MOTIONCAST_API_TOKEN or serve.token_file."""
    from pipelines.system import LocalSystemError, Simulation
    from pipelines.system import up as start_system

    cfg = _setup(config, set_, verbose)
    simulation = None
    if simulate:
        try:
            first = pd.Timestamp(start)
        except ValueError:
            console.print(f"[red]error:[/red] --start {start!r} is not a time")
            raise typer.Exit(2) from None
        # a backlog of one input window, so that the first cycle has its inputs
        backlog = cfg.forecast.frames_in * cfg.simulate.interval_minutes
        simulation = Simulation(first, speed, backlog, minutes)
    with console.status("starting Prefect's server, Ray and the forecast service"):
        try:
            state = start_system(cfg, config, list(set_ or []), simulation)
        except LocalSystemError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    table = Table(title="motioncast is up", show_header=False)
    for key in ("service", "prefect_ui", "archive", "forecasts", "registry", "inbox", "logs"):
        table.add_row(key, str(state[key]))
    if state["clock"]:
        table.add_row("simulated clock", f"{state['clock']} ({speed:g} x from {start})")
    out.print(table)


@app.command()
def down(config: ConfigOpt = None, set_: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Stop what 'motioncast up' started (the flows, the service, Ray, Prefect's server)."""
    from pipelines.system import down as stop

    stopped = stop(_setup(config, set_, verbose))
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was up")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """What runs (processes, service, Prefect) and the last forecasts issued."""
    from pipelines.system import status as look

    found = look(_setup(config, set_, verbose))
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


if __name__ == "__main__":
    app()
