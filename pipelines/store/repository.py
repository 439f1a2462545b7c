"""Icechunk repositories on a local path or object storage, and the single-writer lock."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self, TypeVar

# icechunk logs a warning about local storage and concurrent commits on every open; we keep one
# committing writer per repository (see writer_lock), so the warning carries no information.
os.environ.setdefault("ICECHUNK_LOG", "error")

import icechunk  # noqa: E402
import pandas as pd  # noqa: E402
import zarr  # noqa: E402
from zarr.codecs import ZstdCodec  # noqa: E402
from zarr.errors import GroupNotFoundError  # noqa: E402

from pipelines.config import ObjectStorageConfig, StoresConfig  # noqa: E402
from pipelines.errors import error_line  # noqa: E402
from pipelines.grid import Grid  # noqa: E402
from pipelines.localfiles import exclusive  # noqa: E402
from pipelines.store.objectstore import S3Settings, split_url  # noqa: E402
from pipelines.store.timeaxis import EPOCH  # noqa: E402

icechunk.set_logs_filter(os.environ["ICECHUNK_LOG"])

log = logging.getLogger(__name__)

BRANCH = "main"
RACE_BACKOFF_S = 0.05  # first wait after losing a commit race; doubles, randomised
T = TypeVar("T")


def _s3_storage(bucket: str, prefix: str, options: ObjectStorageConfig | None):
    s = S3Settings.resolve(options)
    keys = {}
    if s.access_key_id:
        keys = {"access_key_id": s.access_key_id, "secret_access_key": s.secret_access_key}
    return icechunk.s3_storage(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=s.endpoint_url,
        region=s.region,
        allow_http=s.allow_http,
        force_path_style=s.force_path_style,
        from_env=not keys,
        **keys,
    )


def _storage(location: str | Path, options: ObjectStorageConfig | None) -> icechunk.Storage:
    text = str(location)
    if is_local(text):
        return icechunk.local_filesystem_storage(str(Path(text).resolve()))
    scheme, bucket, prefix = split_url(text)
    if scheme == "s3":
        return _s3_storage(bucket, prefix, options)
    if scheme == "gs":
        return icechunk.gcs_storage(bucket=bucket, prefix=prefix, from_env=True)
    raise ValueError(f"unknown storage scheme {scheme}:// (use a folder, s3:// or gs://)")


def is_local(location: str | Path) -> bool:
    return "://" not in str(location)


class StoreError(RuntimeError):
    """A store location that cannot be used; the message names it and says why."""


# what a local Icechunk repository folder holds, and what we put beside it
_REPOSITORY_ENTRIES = {"refs", "snapshots", "manifests", "chunks", "transactions", "config.yaml"}
_OWN_ENTRIES = {".writer.lock"}


def check_location(location: str | Path) -> None:
    """Raise StoreError unless a local ``location`` is absent, an empty folder or a repository.

    Checked before Icechunk sees the path (it panics on a file, and would take over a folder of
    other data); it starts no runtime, so it is safe before forking workers.
    """
    if not is_local(location):
        return
    path = Path(location)
    if path.is_file() or (path.exists() and not path.is_dir()):
        raise StoreError(f"{path}: is a file, not a store folder")
    if path.is_dir():
        entries = {p.name for p in path.iterdir()} - _OWN_ENTRIES
        if entries and not entries & _REPOSITORY_ENTRIES:
            shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
            raise StoreError(
                f"{path}: a folder holding other files ({shown}), not a store: "
                "give an empty or new folder"
            )


def open_repository(
    location: str | Path, create: bool, options: ObjectStorageConfig | None = None
) -> icechunk.Repository | None:
    """The repository at ``location``; created when absent and ``create``, else None.
    ``options`` configure object storage (s3://); local folders ignore them."""
    check_location(location)
    if is_local(location) and not create and not Path(location).exists():
        return None  # icechunk's local storage would make the folder just to look in it
    try:
        storage = _storage(location, options)
        if icechunk.Repository.exists(storage):
            return icechunk.Repository.open(storage)
        if not create:
            return None
        if is_local(location):
            Path(location).mkdir(parents=True, exist_ok=True)
        return icechunk.Repository.create(storage)
    except (icechunk.IcechunkError, OSError, ValueError) as exc:
        raise StoreError(f"{location}: cannot open the store: {error_line(exc)}") from None


def has_group(store, path: str) -> bool:
    """Whether a Zarr group exists at ``path`` in an open store."""
    try:
        zarr.open_group(store, path=path, mode="r")
    except GroupNotFoundError:
        return False
    return True


@contextlib.contextmanager
def writer_lock(location: str | Path) -> Iterator[None]:
    """Hold the one-writer lock of a local repository (a no-op on object storage).

    Icechunk's local storage is not safe for concurrent commits; a second writer waits here.
    The lock is an flock: it is released when the holder exits, even by kill -9.
    """
    if not is_local(location):
        yield
        return
    with exclusive(Path(location) / ".writer.lock"):
        yield


def transact(
    repo: icechunk.Repository,
    location: str | Path,
    stage: Callable[[object], tuple[T, bool]],
    message: str,
    tries: int,
    error: type[StoreError] = StoreError,
) -> tuple[T, str | None]:
    """One write as one commit: ``stage(store)`` writes into a fresh session and returns
    (its result, whether it changed anything); the session is committed whole or not at all.

    Under the writer lock (local stores). A commit that another writer's commit got in before
    is rebased onto it when no chunk clashes, else staged again on top of the winner's, up to
    ``tries`` times. Returns the result and the new snapshot id (None when nothing changed).
    Errors of the storage become ``error`` with one line naming the store.
    """
    with writer_lock(location):
        for attempt in range(1, tries + 1):
            try:
                session = repo.writable_session(BRANCH)
                result, changed = stage(session.store)
                if not changed:
                    return result, None
                snapshot = session.commit(
                    message, rebase_with=icechunk.ConflictDetector(), rebase_tries=3
                )
                return result, snapshot
            except (icechunk.ConflictError, icechunk.RebaseFailedError) as exc:
                log.warning(
                    "%s: commit %d of %d lost a race with another writer (%s); writing again",
                    location,
                    attempt,
                    tries,
                    error_line(exc),
                )
                time.sleep(random.uniform(0, RACE_BACKOFF_S * 2**attempt))  # break lockstep
            except icechunk.IcechunkError as exc:  # storage unreachable, or refused
                raise error(f"{location}: write failed: {error_line(exc)}") from None
    raise error(
        f"{location}: other writers won {tries} commits in a row; nothing of this write was "
        "stored (object_storage.commit_tries)"
    )


@dataclass(frozen=True)
class Maintenance:
    """What one maintenance of a store removed."""

    expired_snapshots: int
    deleted_chunks: int
    deleted_bytes: int


def chunk_edges(grid: Grid, chunk_yx: int) -> tuple[int, int]:
    """Chunk edges (rows, columns) for a group on ``grid``: as even as the grid allows with
    none over ``chunk_yx``. An OPERA grid's 2200 rows at 1024 take three chunks of 734, not
    1024 + 1024 + 152 (Zarr encodes every edge chunk at full size)."""

    def edge(n: int) -> int:
        return -(-n // -(-n // chunk_yx))  # ceil(n / ceil(n / chunk_yx))

    return edge(grid.ny), edge(grid.nx)


ISSUE = "issue_time"  # the axis the forecast and scores stores grow along, one entry per issue


class VersionedStore:
    """What the archive and the forecast store share: an Icechunk repository of one Zarr group
    per domain (a group holding ``marker``), read as of the latest commit or any snapshot kept,
    written one commit per write; its history is the audit trail."""

    error: ClassVar[type[StoreError]] = StoreError
    missing: ClassVar[str] = "no store here"  # what to say at a location without one
    marker: ClassVar[str] = "precip"  # the variable a domain's group holds
    section: ClassVar[str]  # its settings in the stores: configuration

    @classmethod
    def from_config(
        cls, stores: StoresConfig, location: str | Path | None = None, create: bool = False
    ) -> Self:
        """The store as the configuration has it (at ``location`` instead of the configured
        one when given): the one way the system opens its stores."""
        settings = getattr(stores, cls.section)
        written = settings.model_dump(exclude={"location", "audit_days"})
        where = location or settings.location
        return cls(where, create=create, storage=stores.object_storage, **written)

    def __init__(
        self,
        location: str | Path,
        chunk_yx: int,
        compression_level: int,
        create: bool,
        storage: ObjectStorageConfig | None,
    ):
        self.location = location
        self.commit_tries = (storage or ObjectStorageConfig()).commit_tries
        try:
            repo = open_repository(location, create=create, options=storage)
        except StoreError as exc:
            raise self.error(str(exc)) from None
        if repo is None:
            raise self.error(f"{location}: {self.missing}")
        self.repo = repo
        self.chunk_yx = chunk_yx
        self.codec = ZstdCodec(level=compression_level)

    def chunk_edges(self, grid: Grid) -> tuple[int, int]:
        """Chunk edges (rows, columns) for a new group on ``grid`` (``chunk_edges``)."""
        return chunk_edges(grid, self.chunk_yx)

    @staticmethod
    def grow(node: zarr.Group, axis: str, size: int) -> None:
        """Every array of a domain's group whose first dimension is ``axis``, resized to
        ``size`` along it (the new entries are written next)."""
        for array in node.array_values():
            names = array.metadata.dimension_names or ()
            if names and names[0] == axis:
                array.resize((size, *array.shape[1:]))

    def _read_store(self, snapshot: str | None = None):
        if snapshot is None:
            return self.repo.readonly_session(branch=BRANCH).store
        try:
            return self.repo.readonly_session(snapshot_id=snapshot).store
        except icechunk.IcechunkError:
            raise self.error(f"{self.location}: no snapshot {snapshot!r}") from None

    def head(self) -> str:
        """Id of the latest commit: pins what a reader sees."""
        return self.repo.lookup_branch(BRANCH)

    def domains(self, snapshot: str | None = None) -> list[str]:
        try:
            root = zarr.open_group(self._read_store(snapshot), mode="r")
        except GroupNotFoundError:  # created, nothing committed yet
            return []
        return sorted(name for name, group in root.groups() if self.marker in group)

    def resolve_domain(self, domain: str | None, snapshot: str | None = None) -> str:
        """``domain``, or the store's only one when None; the error says which there are."""
        domains = self.domains(snapshot)
        if domain is None and len(domains) == 1:
            return domains[0]
        has = ", ".join(domains) or "none"
        if domain is None:
            raise self.error(f"{self.location}: holds domains {has}: name one with domain=")
        if domain not in domains:
            raise self.error(f"{self.location}: no domain {domain!r} (has: {has})")
        return domain

    def stored_times(self, domain: str, axis: str) -> pd.DatetimeIndex:
        """A time axis ``axis`` (int64 minutes since the epoch) of the domain's group as of the
        latest commit, sorted; empty when the store has no such domain."""
        try:  # one read session: domains() would open a second one
            node = zarr.open_group(self._read_store(), path=domain, mode="r")
        except GroupNotFoundError:
            return pd.DatetimeIndex([])
        if self.marker not in node:  # as domains(): a group without the marker is no domain
            return pd.DatetimeIndex([])
        return pd.DatetimeIndex(sorted(EPOCH + pd.to_timedelta(node[axis][:], unit="min")))

    def history(self) -> list[tuple[str, str, pd.Timestamp]]:
        """(snapshot id, message, written at) of every commit kept, newest first."""
        return [
            (s.id, s.message, pd.Timestamp(s.written_at)) for s in self.repo.ancestry(branch=BRANCH)
        ]

    def _commit(
        self, stage: Callable[[object], tuple[T, bool]], message: str
    ) -> tuple[T, str | None]:
        """``stage`` as one commit (``transact``)."""
        return transact(self.repo, self.location, stage, message, self.commit_tries, self.error)

    def maintain(self, keep: pd.Timedelta, now: pd.Timestamp | None = None) -> Maintenance:
        """Expire the snapshots older than ``keep`` and delete the data only they held: the
        history (audit trail) then reaches ``keep`` back; what the branch holds stays readable.
        For the forecast and scores stores, whose commits pile up by the hour; not the archive,
        whose snapshots runs and forecasts name as their inputs."""
        now = pd.Timestamp.now("UTC") if now is None else now.tz_localize("UTC")
        cutoff = (now - keep).floor("us").to_pydatetime()
        with writer_lock(self.location):
            expired = self.repo.expire_snapshots(older_than=cutoff)
            collected = self.repo.garbage_collect(cutoff)
        log.info(
            "%s: %d snapshots expired, %d chunks (%d bytes) deleted",
            self.location,
            len(expired),
            collected.chunks_deleted,
            collected.bytes_deleted,
        )
        return Maintenance(len(expired), collected.chunks_deleted, collected.bytes_deleted)
