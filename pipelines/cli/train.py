"""``motioncast train`` and ``motioncast models list|show|promote``: training and the registry."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from pipelines.cli.common import (
    RegistryOpt,
    Settings,
    StoreOpt,
    command,
    console,
    fail,
    group,
    open_archive,
    out,
)

log = logging.getLogger(__name__)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class TrainingDisplay:
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

    def __enter__(self) -> TrainingDisplay:
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
            log.info(
                "step %d/%d: training loss %s; validation CSI 1 mm/h: %s; %s",
                event.step,
                self.max_steps,
                fields["loss"],
                self.csi,
                fields["left"] or "time left unknown",
            )


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
    *,
    settings: Settings,
) -> None:
    """Train MotionRNN on the archive with Ray Train and register the model.

    Windows come from a pinned snapshot of the archive, split by time blocks; validation scores
    the model, pysteps extrapolation and persistence on the same windows every epoch. The run's
    checkpoints lie in training.scaling.storage/RUN: a failed worker resumes from the last one,
    and --run-name RUN continues a stopped run.
    """
    scaling = {"workers": workers, "use_gpu": gpu}
    cfg = settings.load(
        training={
            "scaling": {k: v for k, v in scaling.items() if v is not None},
            **({"max_minutes": max_minutes} if max_minutes is not None else {}),
            **({"max_steps": max_steps} if max_steps is not None else {}),
        },
    )
    from pipelines.store.archive import ArchiveError
    from pipelines.training.run import TrainingError
    from pipelines.training.run import train as train_run
    from pipelines.training.validation import HEADLINE, validation_table

    try:
        with TrainingDisplay(cfg.training.max_steps) as display:
            result = train_run(store, registry, cfg, run_name=run_name, on_progress=display)
    except (TrainingError, ArchiveError) as exc:
        fail(exc, 1)
    state, card = result.state, result.version.card
    table = Table(
        title=f"{result.version.version}: run {result.run_name}, {state.step} steps, "
        f"{state.elapsed_s / 60:.1f} min; registered: step {card['best_step']}, the best "
        "validation; every method on the same windows and cells (mm/h; FSS at 10 cells; "
        "every score: motioncast models show)",
        box=box.SIMPLE_HEAD,
    )
    metrics, rows = validation_table(card["validation"], list(HEADLINE))
    for col in ("method", *(HEADLINE[m] for m in metrics)):
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
        fail(f"{path}: no model registry here")
    return Registry(path)


def models_list(registry: RegistryOpt) -> None:
    """Registered versions with their validation CSI at 1 mm/h and the paired test against
    S-PROG on the same windows (the difference, its 95 % interval); * marks the one in service."""
    reg = _registry(registry)
    promoted = reg.promoted()
    table = Table(title=f"models in {registry}", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("version", "registered", "run", "CSI 1 mm/h", "- S-PROG [95 %]"):
        table.add_column(col, justify="right" if col[0] in "C-" else "left", no_wrap=True)
    for v in reg.versions():
        test = v.card.get("validation", {}).get("model", {}).get("paired")
        table.add_row(
            v.version + (" *" if promoted and promoted.version == v.version else ""),
            str(v.card.get("registered_at", ""))[:16],
            str(v.card.get("run", "")),
            _score(v.score()),
            "-"
            if not test
            else f"{test['difference']:+.3f} [{test['lower']:+.3f}, {test['upper']:+.3f}]",
        )
    out.print(table)


def models_show(version: str, registry: RegistryOpt) -> None:
    """The version's card (run, model config, data, validation scores) as JSON."""
    from pipelines.registry import RegistryError

    try:
        card = _registry(registry).get(version).card
    except RegistryError as exc:
        fail(exc)
    out.print_json(json.dumps(card, default=str))


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
    *,
    settings: Settings,
) -> None:
    """Put a version in service. Refused unless it beats pysteps S-PROG on its validation
    windows (a paired bootstrap over them: the lower end of the 95 % interval of its mean CSI
    at 1 mm/h minus S-PROG's above zero), or if it scores below the version in service on the
    same windows."""
    from pipelines.registry import PromotionRefused, RegistryError
    from pipelines.training.promotion import promote

    cfg = settings.load()
    reg = _registry(registry)
    if store is not None:
        open_archive(store, cfg)  # one line and exit 2 for what is not an archive
    try:
        promote(reg, version, store=store, force=force, storage=cfg.stores.object_storage)
    except PromotionRefused as exc:
        how = "score both with --store STORE, or " if exc.rescore else ""
        fail(f"{exc} ({how}use --force to promote anyway)", 1)
    except RegistryError as exc:
        fail(exc, 1)
    console.print(f"{version} is in service")


def register(app: typer.Typer) -> None:
    command(app, train)
    models = group(app, "models", "The model registry: list, inspect, promote.")
    command(models, models_list, "list")
    command(models, models_show, "show")
    command(models, models_promote, "promote")
