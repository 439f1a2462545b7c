"""What every verb shares: the consoles, the common options, the configuration's loading, the
progress bar and the one way to fail (one line on stderr, an exit code).

A verb that reads the configuration takes ``settings: Settings`` (keyword-only): ``command``
gives it the options --config, --set and --verbose, and ``settings.load(**sections)`` the
configuration with its own flags on top."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipelines.config import ConfigError, MotioncastConfig, load_config

console = Console(stderr=True, soft_wrap=True)  # one error, one line, even when piped
out = Console(soft_wrap=True)
if not out.is_terminal:  # piped or logged: tables as wide as they need, not 80 columns
    out.width = 160
QUIET_LOGGERS = ("distributed", "prefect", "asyncio", "numcodecs", "h5py", "matplotlib", "httpx")

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
        help="Archive store: a folder or s3://bucket/prefix (stores.object_storage, AWS_* vars).",
    ),
]
RegistryOpt = Annotated[Path, typer.Option("--registry", "-r", help="Model registry folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def fail(message: object, code: int = 2) -> NoReturn:
    """Say what went wrong in one line on stderr (its text is not read as markup) and exit
    with ``code``: 2 for bad input, 1 for a failure of the work itself."""
    console.print(f"[red]error:[/red] {escape(str(message))}")
    raise typer.Exit(code)


def _log_to_console(verbose: bool) -> None:
    """Logging for a terminal, or plain lines when piped (logs and cron mails); the libraries'
    chatter (``QUIET_LOGGERS``) from warnings up only."""
    handler = (
        RichHandler(console=console, show_path=False, show_time=False)
        if console.is_terminal
        else logging.StreamHandler()
    )
    handler.setFormatter(
        logging.Formatter(
            "%(message)s" if console.is_terminal else "%(asctime)s %(levelname)s %(message)s"
        )
    )
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True
    )
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress() -> Progress:
    """A transient bar on stderr: what is being done, done of total, time elapsed."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def start_time(text: str):
    """``--start``'s time, or exit 2 saying it is not one."""
    import pandas as pd

    try:
        return pd.Timestamp(text)
    except ValueError:
        fail(f"--start {text!r} is not a time")


def open_archive(store: str | None, cfg: MotioncastConfig):
    """The archive at ``store`` (default: the configured one), or exit 2 saying why it is not
    one."""
    from pipelines.store import Archive, ArchiveError

    try:
        return Archive.from_config(cfg.stores, store)
    except ArchiveError as exc:
        fail(exc)


def locations(**given: str | None) -> dict | None:
    """The ``stores:`` section that the store flags give (archive=, forecasts=, scores=: each
    that is not None moves that store), for ``setup``; None when none is given."""
    moved = {name: {"location": where} for name, where in given.items() if where is not None}
    return moved or None


def paragraphs(text: str | None) -> str:
    """A docstring as ``--help`` shows it: its paragraphs reflowed to the terminal's width
    (the docstring's own line breaks dropped), the paragraphs kept apart."""
    import inspect

    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text or "").split("\n\n"))


@dataclass(frozen=True)
class Settings:
    """How a verb reads the configuration: --config FILE, the --set overrides, --verbose."""

    file: Path | None
    overrides: list[str]
    verbose: bool

    def load(self, **sections: object) -> MotioncastConfig:
        """Logging set up, then the configuration: the defaults, --config, the --set
        overrides, then the verb's own flags (``sections``); exit 2 on a bad one."""
        _log_to_console(self.verbose)
        try:
            return load_config(self.file, self.overrides, **sections)
        except ConfigError as exc:
            fail(exc)


def _with_settings(verb: Callable) -> Callable:
    """``verb`` with its ``settings`` parameter replaced by --config, --set and --verbose."""
    signature = inspect.signature(verb, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "settings"]
    common = [
        inspect.Parameter(
            "config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigOpt
        ),
        inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=SetOpt),
        inspect.Parameter(
            "verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=VerboseOpt
        ),
    ]

    @functools.wraps(verb)
    def with_settings(*args, config=None, set_=None, verbose=False, **kwargs):
        return verb(*args, settings=Settings(config, list(set_ or []), verbose), **kwargs)

    with_settings.__signature__ = signature.replace(parameters=[*own, *common])
    return with_settings


def command(app: typer.Typer, verb: Callable, name: str | None = None) -> None:
    """Add ``verb`` to ``app`` under ``name`` (default: the function's name), its docstring
    as the help text; a verb that takes ``settings`` gets --config, --set and --verbose."""
    if "settings" in inspect.signature(verb).parameters:
        verb = _with_settings(verb)
    app.command(name, help=paragraphs(verb.__doc__))(verb)


def group(app: typer.Typer, name: str, help: str) -> typer.Typer:
    """A verb group (``motioncast NAME VERB``) added to ``app``."""
    sub = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub
