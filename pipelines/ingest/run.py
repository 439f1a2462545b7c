"""The ingest loop: decoded outcomes in, batched commits and quarantined files out.

``ingest`` decodes with a local process pool (the CLI); the Prefect flow feeds
``ingest_outcomes`` from Dask tasks instead. Either way one process, this one, commits.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from pipelines.config import MotioncastConfig
from pipelines.frame import Frame
from pipelines.ingest.decode import DecodeOutcome, check_domain, decode_outcome
from pipelines.ingest.discover import discover
from pipelines.ingest.quarantine import quarantine
from pipelines.ingest.window import in_flight
from pipelines.store.archive import Archive, ArchiveError, WriteReport
from pipelines.store.encoded import EncodedPrecip
from pipelines.store.layout import wet_fraction
from pipelines.store.mosaic import MosaicSpec
from pipelines.store.repository import check_location, chunk_edges

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    files: int = 0
    added: Counter = field(default_factory=Counter)  # frames per domain
    replaced: Counter = field(default_factory=Counter)
    unchanged: Counter = field(default_factory=Counter)
    staged: Counter = field(default_factory=Counter)  # single-radar frames awaiting a mosaic
    pending: set = field(default_factory=set)  # (domain, slot) mosaics waiting for radars
    failed: list[str] = field(default_factory=list)  # one line each: file and reason
    failed_paths: set[Path] = field(default_factory=set)  # the files those lines name
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
            "staged": dict(self.staged),
            "pending": sorted(f"{d} {t:%Y-%m-%dT%H:%M}" for d, t in self.pending),
            "failed": list(self.failed),
            "snapshots": list(self.snapshots),
        }


def open_archive_for_writing(cfg: MotioncastConfig) -> Archive:
    return Archive.from_config(cfg.stores, create=True)


def mosaic_specs(cfg: MotioncastConfig) -> dict[str, MosaicSpec]:
    """Every configured domain merges the radars whose volumes land on it."""
    m = cfg.ingest.mosaic
    return {
        name: MosaicSpec(tuple(d.radars), m.method, m.deadline_minutes)
        for name, d in cfg.domains.items()
    }


def _float32_bytes(precip: np.ndarray | EncodedPrecip) -> int:
    """The float32 size of a frame's field, encoded or not (what batch_megabytes counts)."""
    return precip.float32_bytes if isinstance(precip, EncodedPrecip) else precip.nbytes


def ingest_outcomes(
    outcomes: Iterable[DecodeOutcome],
    cfg: MotioncastConfig,
    on_file: Callable[[DecodeOutcome], None] | None = None,
) -> IngestResult:
    """Commit good frames in batches of ``ingest.batch_size`` frames or
    ``ingest.batch_megabytes``, whichever is reached first; quarantine the bad files.

    One writer thread commits a batch while the next one is being decoded (double buffering):
    still a single committing writer, but the store no longer waits for the decoder. A domain
    met for the first time has its group created by the writer at once, in a commit of its own,
    while its first batch fills.
    """
    archive = open_archive_for_writing(cfg)
    mosaics = mosaic_specs(cfg)
    result = IngestResult()
    batch: list[tuple[Frame, Path]] = []
    order = itertools.count()  # the writer's work, numbered: it runs in this order
    pending: tuple[Future, dict[int, Path], int] | None = None  # the batch being written

    def fail(path: Path, line: str) -> None:
        log.error(line)
        result.failed.append(line)
        result.failed_paths.add(path)
        quarantine(path, line, cfg)

    seen: set[str] = set()  # domains met so far
    created: list[tuple[int, Future]] = []  # their groups, created ahead of their first batch

    def created_before(number: float) -> None:
        """Collect the creations the writer was given before its work ``number`` (done once
        that is: the writer runs its work in order)."""
        while created and created[0][0] < number:
            try:
                snapshot = created.pop(0)[1].result()
            except ArchiveError as exc:  # the batch creates the group, or says why it cannot
                log.warning("creating a domain ahead of its frames failed: %s", exc)
                continue
            if snapshot:
                result.snapshots.append(snapshot)

    def collect(future: Future, sources: dict[int, Path], number: int) -> None:
        created_before(number)
        try:
            report = future.result()
        except ArchiveError as exc:  # storage down, or other writers won every race:
            for path in sources.values():  # the files are fine, a later run stores them
                line = f"{path}: not stored: {exc}"
                log.error(line)
                result.failed.append(line)
                result.failed_paths.add(path)
            return
        for domain, times in report.added.items():
            result.added[domain] += len(times)
        for domain, times in report.replaced.items():
            result.replaced[domain] += len(times)
        for domain, times in report.unchanged.items():
            result.unchanged[domain] += len(times)
        for domain, times in report.staged.items():
            result.staged[domain] += len(times)
        for domain in report.added:  # slots written now are no longer pending
            result.pending -= {(domain, t) for t in report.added[domain]}
        result.pending |= {(d, t) for d, times in report.pending.items() for t in times}
        for frame, reason in report.rejected:
            path = sources[id(frame)]
            fail(path, f"{path}: {reason}")
        if report.snapshot:
            result.snapshots.append(report.snapshot)

    def write(frames: list[Frame]) -> WriteReport:
        names = ", ".join(sorted({f.domain for f in frames}))
        return archive.write(frames, f"ingest {len(frames)} frames into {names}", mosaics)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-writer") as writer:

        def commit() -> None:
            nonlocal pending
            if pending is not None:
                collect(*pending)  # at most one batch in flight
            sources = {id(f): p for f, p in batch}
            if batch:
                pending = (writer.submit(write, [f for f, _ in batch]), sources, next(order))
            else:
                pending = None
            batch.clear()

        for outcome in outcomes:
            result.files += 1
            if outcome.frame is None:
                fail(outcome.path, outcome.error or f"{outcome.path}: failed")
            else:
                frame = outcome.frame
                if frame.domain not in seen:
                    seen.add(frame.domain)  # not a mosaic's group: its radars' are staged
                    if not (frame.domain in mosaics and frame.site_lonlat is not None):
                        created.append((next(order), writer.submit(archive.prepare, frame)))
                batch.append((frame, outcome.path))
                held = sum(_float32_bytes(f.precip) for f, _ in batch) / 2**20
                if len(batch) >= cfg.ingest.batch_size or held >= cfg.ingest.batch_megabytes:
                    commit()
            if on_file:
                on_file(outcome)
        commit()
        if pending is not None:
            collect(*pending)
        created_before(float("inf"))  # those after the last batch
    return result


def decode_for_commit(path: Path, cfg: MotioncastConfig, domain: str | None) -> DecodeOutcome:
    """A decoding process's (or Dask task's) work: the outcome, its field encoded as the
    archive stores it, so that the committing process stores the bytes as they are."""
    outcome = decode_outcome(path, cfg, domain)
    if outcome.frame is not None:
        precip = outcome.frame.precip
        outcome.frame.precip = EncodedPrecip.encode(
            precip,
            chunk_edges(outcome.frame.grid, cfg.stores.archive.chunk_yx),
            cfg.stores.archive.compression_level,
            wet_fraction(precip),
        )
    return outcome


def ingest(
    paths: Iterable[str | Path],
    cfg: MotioncastConfig,
    domain: str | None = None,
    on_file: Callable[[DecodeOutcome], None] | None = None,
    files: list[Path] | None = None,
) -> IngestResult:
    """Ingest files and folders (recursively) into the archive ``cfg.stores.archive``, decoding
    in ``ingest.workers`` processes."""
    if domain is not None:
        check_domain(domain, cfg)
    check_location(cfg.stores.archive.location)  # a bad store fails here, before any file
    files = discover(paths) if files is None else files
    workers = cfg.ingest.workers
    if workers <= 1 or len(files) <= 1:
        return ingest_outcomes(
            map(partial(decode_outcome, cfg=cfg, domain=domain), files), cfg, on_file
        )
    # fork, so that workers inherit the imported readers instead of importing them again
    # (seconds); in_flight submits its first window at once, which forks them before this
    # process opens the store and starts the store's runtime threads
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        window = in_flight(
            files, lambda path: pool.submit(decode_for_commit, path, cfg, domain), decode_ahead(cfg)
        )
        return ingest_outcomes((future.result() for _, future in window), cfg, on_file)


def decode_ahead(cfg: MotioncastConfig) -> int:
    """Decodes in flight ahead of the committing process: ``ingest.decode_ahead``, or twice
    the decoding processes."""
    return cfg.ingest.decode_ahead or 2 * cfg.ingest.workers
