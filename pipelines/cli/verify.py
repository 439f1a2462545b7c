"""``motioncast verify``: score the issued forecasts and report a period."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pipelines.cli.common import (
    Settings,
    StoreOpt,
    command,
    console,
    fail,
    locations,
    out,
    progress,
)


def verify(
    store: StoreOpt = None,
    forecasts: Annotated[
        str | None,
        typer.Option(
            "--forecasts", "-f", help="Forecast store (default: stores.forecasts.location)."
        ),
    ] = None,
    scores: Annotated[
        str | None,
        typer.Option(
            "--scores", help="Scores store (default: stores.scores.location); created if new."
        ),
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
    *,
    settings: Settings,
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
    from pipelines.store.repository import StoreError
    from pipelines.store.timeaxis import FrameSelectError, parse_time
    from pipelines.verification.report import period_table, skill_plots
    from pipelines.verification.store import ScoresStore
    from pipelines.verification.verify import verify as score_due

    cfg = settings.load(
        stores=locations(archive=store, forecasts=forecasts, scores=scores),
    )
    try:
        start = parse_time(since, "--since") if since else None
        end = parse_time(until, "--until") if until else None
        if score:
            with progress() as bar:
                task = bar.add_task("scoring", total=None)

                def advance(name: str, done: int, total: int) -> None:
                    bar.update(task, description=f"scoring {name}", completed=done, total=total)

                outcomes = score_due(cfg, domain, on_scored=advance)
            for o in outcomes:
                console.print(
                    f"{o.domain}: not verified: {escape(o.error)}"
                    if o.error
                    else f"{o.domain}: {o.scored} scored, {o.waiting} wait for observations"
                )
        scored = ScoresStore.from_config(cfg.stores)
        fstore = ForecastStore.from_config(cfg.stores)
        have = scored.domains()
        names = [d for d in domain or have if d in have]
        pooled = [scored.pool(d, start, end) for d in names]
        steps = {d: int(fstore.dataset(d).attrs["time_step_minutes"]) for d in names}
    except (FrameSelectError, StoreError) as exc:
        fail(exc)
    pooled = [p for p in pooled if p.issues]
    if not pooled:
        console.print("no scored forecasts in that period")
        return
    if as_json:
        report = {p.domain: {m: s.summary() for m, s in p.scores.items()} for p in pooled}
        out.print_json(json.dumps(report))
        return
    out.print(period_table(pooled))
    for p in pooled:
        made = ", ".join(f"{k} ({v})" for k, v in p.issued_methods.items())
        out.print(f"{p.domain}: issued by {made}")
        for path in skill_plots(p, out_dir, steps[p.domain]):
            out.print(f"  {path}")


def register(app: typer.Typer) -> None:
    command(app, verify)
