"""The ingest flow: decode radar files in parallel on Dask, commit from this one process.

Run it over explicit paths or over an inbox folder; with an inbox, files whose frames landed are
moved to ``<inbox>/.ingested/`` and bad ones to the quarantine, so each run picks up only what is
new. ``ingest.dask_address`` in the configuration sends decoding to a Dask cluster; without it a
local cluster of ``ingest.workers`` processes starts for the run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect_dask import DaskTaskRunner

from pipelines.config import MotioncastConfig, load_config
from pipelines.ingest import DecodeOutcome, discover, ingest_outcomes
from pipelines.ingest.decode import check_domain
from pipelines.ingest.placement import free_path
from pipelines.ingest.run import decode_ahead, decode_for_commit
from pipelines.ingest.window import in_flight
from pipelines.store.repository import check_location

INGESTED = ".ingested"


@task(name="decode", cache_policy=NONE)
def decode(path: Path, cfg: MotioncastConfig, domain: str | None) -> DecodeOutcome:
    return decode_for_commit(path, cfg, domain)


def _in_order(
    files: list[Path], cfg: MotioncastConfig, domain: str | None
) -> Iterator[DecodeOutcome]:
    """Decode ``decode_ahead`` files ahead of the writer and yield their outcomes in file order."""
    task_ = decode.with_options(
        retries=cfg.ingest.retries, retry_delay_seconds=cfg.ingest.retry_delay_seconds
    )
    submit = partial(task_.submit, cfg=cfg, domain=domain)
    for path, future in in_flight(files, submit, decode_ahead(cfg)):
        try:
            yield future.result()
        except Exception as exc:  # the task failed beyond its retries (a lost worker...)
            yield DecodeOutcome(path, None, f"{path}: decode task failed: {exc}")


def set_aside(path: Path, inbox: Path) -> Path:
    """Move an ingested file to ``<inbox>/.ingested/`` under its path relative to the inbox;
    a file of the same name never overwrites another (pipelines.ingest.placement)."""
    target = free_path(inbox / INGESTED / path.relative_to(inbox))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), target)
    return target


def _summary_markdown(result: dict, store: Path) -> str:
    lines = [f"# Ingest into `{store}`", "", f"- files: {result['files']}"]
    for key in ("added", "replaced", "unchanged"):
        per = ", ".join(f"{d}: {n}" for d, n in sorted(result[key].items())) or "none"
        lines.append(f"- frames {key}: {per}")
    lines.append(f"- commits: {', '.join(result['snapshots']) or 'none'}")
    lines.append(f"- failed: {len(result['failed'])}")
    lines += [f"  - {line}" for line in result["failed"]]
    return "\n".join(lines)


@flow(name="ingest")
def ingest_flow(
    paths: list[str] | None = None,
    inbox: str | None = None,
    store: str | None = None,
    domain: str | None = None,
    config_file: str | None = None,
    overrides: list[str] | None = None,
) -> dict:
    """Ingest ``paths`` (files or folders) or everything new in ``inbox`` into the archive."""
    logger = get_run_logger()
    cfg = _config(config_file, overrides, store, inbox)
    if domain is not None:
        check_domain(domain, cfg)
    check_location(cfg.stores.archive.location)
    files = discover([*(paths or []), *([inbox] if inbox else [])])
    logger.info("%d files to ingest into %s", len(files), cfg.stores.archive.location)
    landed: list[Path] = []

    def note(outcome: DecodeOutcome) -> None:
        if outcome.ok:
            landed.append(outcome.path)

    result = ingest_outcomes(_in_order(files, cfg, domain), cfg, on_file=note)
    if inbox:  # every commit is done: the landed files can leave the inbox
        for path in landed:
            if path not in result.failed_paths and path.exists():
                set_aside(path, Path(inbox))
    summary = result.as_dict()
    create_markdown_artifact(
        markdown=_summary_markdown(summary, Path(cfg.stores.archive.location)),
        key="ingest-summary",
        description="What the ingest run stored",
    )
    for line in result.failed:
        logger.error(line)
    return summary


def _config(
    config_file: str | None, overrides: list[str] | None, store: str | None, inbox: str | None
) -> MotioncastConfig:
    sections: dict = {}
    if store:
        sections["store"] = {"archive": store}
    if inbox:  # a bad file must leave the inbox, or every run would meet it again
        sections["ingest"] = {"quarantine_action": "move"}
    return load_config(Path(config_file) if config_file else None, overrides, **sections)


def task_runner(cfg: MotioncastConfig) -> DaskTaskRunner:
    """A Dask runner on the configured cluster, or on a local cluster of decoding processes."""
    if cfg.ingest.dask_address:
        return DaskTaskRunner(address=cfg.ingest.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": cfg.ingest.workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


def run_ingest_flow(**params) -> dict:
    """Run the flow with the task runner its configuration asks for."""
    cfg = _config(
        params.get("config_file"), params.get("overrides"), params.get("store"), params.get("inbox")
    )
    return ingest_flow.with_options(task_runner=task_runner(cfg))(**params)


def inbox_deployment(
    cfg: MotioncastConfig, config_file: str | None = None, overrides=None, speed: float = 1.0
):
    """Ingest of ``system.inbox`` every ``system.ingest_every_seconds`` (of a clock ``speed``
    times faster than the wall clock), one run at a time."""
    from flows import one_at_a_time

    return ingest_flow.with_options(task_runner=task_runner(cfg)).to_deployment(
        name="ingest-inbox",
        interval=cfg.system.ingest_every_seconds / speed,
        concurrency_limit=one_at_a_time(),
        parameters={
            "inbox": str(cfg.system.inbox),
            "config_file": config_file,
            "overrides": overrides,
        },
        description="Ingest what arrived in the inbox.",
    )
