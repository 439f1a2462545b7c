"""``motioncast ingest``: radar files (composites or volumes) into the archive."""

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
    out,
    progress,
)


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively).")],
    store: StoreOpt = None,
    domain: Annotated[
        str | None, typer.Option(help="Put every frame on this configured domain.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Decoding processes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Decode radar files (composites or volumes) into the archive store.

    Bad files are reported one line each and copied to the quarantine folder with the reason;
    the good ones still land. Exit code 1 when any file failed.
    """
    from pipelines.ingest import discover
    from pipelines.ingest import ingest as run_ingest
    from pipelines.ingest.decode import check_domain
    from pipelines.store.repository import StoreError, check_location

    cfg = settings.load(
        stores=locations(archive=store),
        ingest={"workers": workers} if workers else None,
    )
    try:
        if domain is not None:
            check_domain(domain, cfg)
        check_location(cfg.stores.archive.location)
        files = discover(paths)
        with progress() as bar:
            task = bar.add_task("ingesting", total=len(files))
            result = run_ingest(
                paths, cfg, domain, files=files, on_file=lambda _: bar.advance(task)
            )
    except (FileNotFoundError, ValueError, StoreError) as exc:
        fail(exc)
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


def register(app: typer.Typer) -> None:
    command(app, ingest)
