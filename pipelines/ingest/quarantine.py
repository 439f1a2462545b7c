"""Bad input is set aside with the reason, never silently dropped and never half-ingested."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from pipelines.config import MotioncastConfig
from pipelines.ingest.placement import free_path
from pipelines.store.objectstore import split_url
from pipelines.store.repository import is_local


def quarantine_folder(cfg: MotioncastConfig) -> Path:
    """``ingest.quarantine``; else ``<archive>.quarantine`` beside a local archive, or
    ``quarantine/<bucket>/<prefix>`` in the working folder for one on object storage."""
    if cfg.ingest.quarantine is not None:
        return Path(cfg.ingest.quarantine)
    location = cfg.stores.archive.location.rstrip("/")
    if not is_local(location):
        _, bucket, prefix = split_url(location)
        return Path("quarantine", bucket, *prefix.split("/"))
    archive = Path(location)
    return archive.with_name(archive.name + ".quarantine")


def quarantine(path: Path, reason: str, cfg: MotioncastConfig) -> Path:
    """Copy (or move, per ``ingest.quarantine_action``) ``path`` into the quarantine folder with
    ``<name>.reason.txt`` beside it. Returns the quarantined file's path: a file of the same
    name from elsewhere gets a suffix, it never overwrites another."""
    folder = quarantine_folder(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    if path.resolve().parent == folder.resolve():  # already in the quarantine
        target = path
    else:
        target = free_path(folder / path.name, source=path)
    if path.exists() and path.resolve() != target.resolve():
        if cfg.ingest.quarantine_action == "move":
            shutil.move(str(path), target)
        else:
            shutil.copy2(path, target)
    stamp = pd.Timestamp.now("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    target.with_name(target.name + ".reason.txt").write_text(
        f"file: {path}\nreason: {reason}\nquarantined: {stamp}\n"
    )
    return target
