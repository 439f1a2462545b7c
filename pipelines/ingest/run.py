"""The ingest loop: decoded outcomes in, batched commits and quarantined files out.

``ingest`` decodes with a local process pool (the CLI); the Prefect flow feeds
``ingest_outcomes`` from Dask tasks instead. Either way one process, this one, commits.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pipelines.config import MotioncastConfig
from pipelines.frame import Frame
from pipelines.ingest.decode import DecodeOutcome, check_domain, decode_outcome
from pipelines.ingest.discover import discover
from pipelines.ingest.quarantine import quarantine
from pipelines.store.archive import Archive, WriteReport

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    files: int = 0
    added: Counter = field(default_factory=Counter)  # frames per domain
    replaced: Counter = field(default_factory=Counter)
    unchanged: Counter = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)  # one line each: file and reason
    snapshots: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "added": dict(self.added),
            "replaced": dict(self.replaced),
            "unchanged": dict(self.unchanged),
            "failed": list(self.failed),
            "snapshots": list(self.snapshots),
        }


def open_archive_for_writing(cfg: MotioncastConfig) -> Archive:
    return Archive(
        cfg.store.archive,
        chunk_yx=cfg.store.chunk_yx,
        compression_level=cfg.store.compression_level,
        create=True,
    )


def ingest_outcomes(
    outcomes: Iterable[DecodeOutcome],
    cfg: MotioncastConfig,
    on_file: Callable[[DecodeOutcome], None] | None = None,
) -> IngestResult:
    """Commit good frames in batches of ``ingest.batch_size``; quarantine the bad files.

    One writer thread commits a batch while the next one is being decoded (double buffering):
    still a single committing writer, but the store no longer waits for the decoder.
    """
    archive = open_archive_for_writing(cfg)
    result = IngestResult()
    batch: list[tuple[Frame, Path]] = []
    pending: Future | None = None

    def fail(path: Path, line: str) -> None:
        log.error(line)
        result.failed.append(line)
        quarantine(path, line, cfg)

    def collect(future: Future) -> None:
        report, sources = future.result()
        for domain, times in report.added.items():
            result.added[domain] += len(times)
        for domain, times in report.replaced.items():
            result.replaced[domain] += len(times)
        for domain, times in report.unchanged.items():
            result.unchanged[domain] += len(times)
        for frame, reason in report.rejected:
            path = sources[id(frame)]
            fail(path, f"{path}: {reason}")
        if report.snapshot:
            result.snapshots.append(report.snapshot)

    def write(items: list[tuple[Frame, Path]]) -> tuple[WriteReport, dict[int, Path]]:
        frames = [f for f, _ in items]
        names = ", ".join(sorted({f.domain for f in frames}))
        report = archive.write(frames, f"ingest {len(frames)} frames into {names}")
        return report, {id(f): p for f, p in items}

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-writer") as writer:

        def commit() -> None:
            nonlocal pending
            if pending is not None:
                collect(pending)  # at most one batch in flight
            pending = writer.submit(write, list(batch)) if batch else None
            batch.clear()

        for outcome in outcomes:
            result.files += 1
            if outcome.frame is None:
                fail(outcome.path, outcome.error or f"{outcome.path}: failed")
            else:
                batch.append((outcome.frame, outcome.path))
                if len(batch) >= cfg.ingest.batch_size:
                    commit()
            if on_file:
                on_file(outcome)
        commit()
        if pending is not None:
            collect(pending)
    return result


def _decode_in_pool(
    files: list[Path], cfg: MotioncastConfig, domain: str | None, workers: int
) -> Iterator[DecodeOutcome]:
    decode = partial(decode_outcome, cfg=cfg, domain=domain)
    if workers <= 1 or len(files) <= 1:
        yield from map(decode, files)
        return
    # fork: workers inherit the imported readers instead of importing them again (seconds)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(decode, files, chunksize=2)


def ingest(
    paths: Iterable[str | Path],
    cfg: MotioncastConfig,
    domain: str | None = None,
    on_file: Callable[[DecodeOutcome], None] | None = None,
    files: list[Path] | None = None,
) -> IngestResult:
    """Ingest files and folders (recursively) into the archive ``cfg.store.archive``."""
    if domain is not None:
        check_domain(domain, cfg)
    files = discover(paths) if files is None else files
    outcomes = _decode_in_pool(files, cfg, domain, cfg.ingest.workers)
    return ingest_outcomes(outcomes, cfg, on_file)
