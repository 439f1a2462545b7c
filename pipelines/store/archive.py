"""The archive: observed rain rate, precip(time, y, x) in mm/h, one Zarr group per domain.

Every write is one Icechunk commit: readers see whole frames only, a writer killed before its
commit leaves the store as of the last commit, a frame already stored from the same source bytes
is skipped, and frames arriving out of order are inserted so that time stays sorted.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import icechunk
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.codecs import ZstdCodec
from zarr.errors import GroupNotFoundError

from pipelines.frame import PROVENANCE_FIELDS, Frame
from pipelines.grid import Grid
from pipelines.store.mosaic import MosaicSpec, merge
from pipelines.store.repository import open_repository, writer_lock

log = logging.getLogger(__name__)

BRANCH = "main"
CONTRIBUTIONS = "contributions"  # <domain>/contributions/<radar>: radar frames staged for mosaics
PRECIP_ATTRS = {
    "standard_name": "rainfall_rate",
    "long_name": "rain rate",
    "units": "mm h-1",
    "grid_mapping": "crs",
    "comment": "NaN where no radar sees; the rate over the period ending at time",
}
WET_MM_H = 0.1  # rain rate from which a cell counts as wet in wet_fraction
WET_ATTRS = {
    "long_name": "share of the seen area with rain",
    "units": "1",
    "threshold_mm_h": WET_MM_H,
    "comment": "for sampling training windows and quick looks",
}
X_ATTRS = {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}
Y_ATTRS = {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}
TIME_ENCODING = {
    "units": "minutes since 1970-01-01",
    "calendar": "proleptic_gregorian",
    "dtype": "int64",
}


class ArchiveError(RuntimeError):
    """The archive cannot be opened or a frame does not fit it; the message says why."""


@dataclass
class WriteReport:
    added: dict[str, list[pd.Timestamp]] = field(default_factory=lambda: defaultdict(list))
    replaced: dict[str, list[pd.Timestamp]] = field(default_factory=lambda: defaultdict(list))
    unchanged: dict[str, list[pd.Timestamp]] = field(default_factory=lambda: defaultdict(list))
    rejected: list[tuple[Frame, str]] = field(default_factory=list)
    staged: dict[str, list[pd.Timestamp]] = field(default_factory=lambda: defaultdict(list))
    pending: dict[str, list[pd.Timestamp]] = field(default_factory=lambda: defaultdict(list))
    snapshot: str | None = None

    @property
    def n_written(self) -> int:
        return sum(map(len, self.added.values())) + sum(map(len, self.replaced.values()))


@dataclass(frozen=True)
class DomainSummary:
    domain: str
    grid: Grid
    n_frames: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    time_step_minutes: int
    missing: list[pd.Timestamp]

    def as_dict(self) -> dict[str, object]:
        return {
            "domain": self.domain,
            "crs": self.grid.crs.name,
            "proj4": self.grid.proj4,
            "shape": list(self.grid.shape),
            "resolution_m": [self.grid.dx, self.grid.dy],
            "extent_m": list(self.grid.extent),
            "n_frames": self.n_frames,
            "start": self.start.isoformat() if self.start is not None else None,
            "end": self.end.isoformat() if self.end is not None else None,
            "time_step_minutes": self.time_step_minutes,
            "n_missing": len(self.missing),
            "missing": [t.isoformat() for t in self.missing],
        }


def wet_fraction(precip: np.ndarray) -> np.float32:
    """Share of the cells some radar sees where it rains at least WET_MM_H."""
    seen = np.isfinite(precip)
    n = seen.sum()
    return np.float32((precip[seen] >= WET_MM_H).sum() / n if n else 0.0)


def _frames_dataset(frames: list[Frame]) -> xr.Dataset:
    """Frames on one grid, in the given order, as the archive group's variables."""
    grid = frames[0].grid
    data = {
        "precip": (("time", "y", "x"), np.stack([f.precip for f in frames]), PRECIP_ATTRS),
        "crs": ((), np.int8(0), grid.cf_grid_mapping()),
    }
    for name in PROVENANCE_FIELDS:
        data[name] = (("time",), np.array([getattr(f, name) for f in frames], dtype=object))
    data["wet_fraction"] = (
        ("time",),
        np.array([wet_fraction(f.precip) for f in frames]),
        WET_ATTRS,
    )
    domain = frames[0].domain
    attrs = {
        "Conventions": "CF-1.10",
        "title": f"motioncast archive: observed rain rate, domain {domain}",
        "domain": domain,
        "time_step_minutes": frames[0].time_step_minutes,
    }  # on every write: xarray replaces the group's attributes when it appends
    if frames[0].site_lonlat is not None:
        attrs["site_lon"], attrs["site_lat"] = frames[0].site_lonlat
    return xr.Dataset(
        data,
        attrs=attrs,
        coords={
            "time": ("time", pd.DatetimeIndex([f.time for f in frames]), {"axis": "T"}),
            "y": ("y", grid.y, Y_ATTRS),
            "x": ("x", grid.x, X_ATTRS),
        },
    )


class Archive:
    """An archive store at a local path (or s3:// / gs:// URL)."""

    def __init__(
        self,
        location: str | Path,
        chunk_yx: int = 1024,
        compression_level: int = 1,
        create: bool = False,
    ):
        self.location = location
        repo = open_repository(location, create=create)
        if repo is None:
            raise ArchiveError(f"{location}: no archive store here (run 'motioncast ingest' first)")
        self.repo = repo
        self.chunk_yx = chunk_yx
        self.codec = ZstdCodec(level=compression_level)

    # ---- reading -------------------------------------------------------------------------
    def _read_store(self, snapshot: str | None = None):
        if snapshot is None:
            return self.repo.readonly_session(branch=BRANCH).store
        try:
            return self.repo.readonly_session(snapshot_id=snapshot).store
        except icechunk.IcechunkError:
            raise ArchiveError(f"{self.location}: no snapshot {snapshot!r}") from None

    def head(self) -> str:
        """Id of the latest commit: pins what a reader (a training run) sees."""
        return self.repo.lookup_branch(BRANCH)

    def domains(self, snapshot: str | None = None) -> list[str]:
        try:
            root = zarr.open_group(self._read_store(snapshot), mode="r")
        except GroupNotFoundError:  # created, nothing committed yet
            return []
        return sorted(name for name, group in root.groups() if "precip" in group)

    def dataset(self, domain: str | None = None, snapshot: str | None = None) -> xr.Dataset:
        """The domain's group as a lazy xarray Dataset, from the latest commit or ``snapshot``."""
        domains = self.domains(snapshot)
        if domain is None:
            if len(domains) != 1:
                raise ArchiveError(
                    f"{self.location}: holds domains {', '.join(domains) or 'none'}: "
                    "name one with domain="
                )
            domain = domains[0]
        if domain not in domains:
            raise ArchiveError(
                f"{self.location}: no domain {domain!r} (has: {', '.join(domains) or 'none'})"
            )
        return xr.open_zarr(self._read_store(snapshot), group=domain, consolidated=False)

    def summary(self) -> list[DomainSummary]:
        out = []
        for name in self.domains():
            ds = self.dataset(name)
            times = pd.DatetimeIndex(ds.time.values)
            step = int(ds.attrs.get("time_step_minutes", 5))
            missing: list[pd.Timestamp] = []
            if len(times):
                slots = pd.date_range(times[0].floor(f"{step}min"), times[-1], freq=f"{step}min")
                missing = list(slots.difference(times.floor(f"{step}min")))
            out.append(
                DomainSummary(
                    domain=name,
                    grid=Grid.from_coords(ds.crs.attrs["crs_wkt"], ds.x.values, ds.y.values),
                    n_frames=len(times),
                    start=times[0] if len(times) else None,
                    end=times[-1] if len(times) else None,
                    time_step_minutes=step,
                    missing=missing,
                )
            )
        return out

    def history(self) -> list[tuple[str, str, pd.Timestamp]]:
        """(snapshot id, message, written at) of every commit, newest first: the audit trail."""
        return [
            (s.id, s.message, pd.Timestamp(s.written_at)) for s in self.repo.ancestry(branch=BRANCH)
        ]

    # ---- writing -------------------------------------------------------------------------
    def write(
        self,
        frames: Iterable[Frame],
        message: str,
        mosaics: dict[str, MosaicSpec] | None = None,
        now: pd.Timestamp | None = None,
    ) -> WriteReport:
        """Store frames in one commit; see the module docstring for the guarantees.

        A single radar's frame on a domain of ``mosaics`` is staged under
        ``<domain>/contributions/<radar>``; the domain's frame for that slot is then (re)built from
        every staged radar once all expected radars are in or the slot's deadline has passed
        (``now``, default the wall clock). A radar arriving later rebuilds the slot and is named
        in the frame's ``updates``.
        """
        mosaics = mosaics or {}
        now = pd.Timestamp.now("UTC").tz_convert(None) if now is None else now
        report = WriteReport()
        direct: dict[str, dict[pd.Timestamp, Frame]] = defaultdict(dict)
        staged: dict[str, dict[pd.Timestamp, Frame]] = defaultdict(dict)
        for frame in frames:  # a later frame for the same slot in one batch wins
            if frame.domain in mosaics and frame.site_lonlat is not None:
                staged[f"{frame.domain}/{CONTRIBUTIONS}/{frame.radars}"][frame.time] = frame
            else:
                direct[frame.domain][frame.time] = frame
        if not direct and not staged and not mosaics:
            return report
        with writer_lock(self.location):
            session = self.repo.writable_session(BRANCH)
            store = session.store
            for group, batch in direct.items():
                self._upsert(store, group, [batch[t] for t in sorted(batch)], report)
            staging = WriteReport()
            for group, batch in staged.items():
                self._upsert(store, group, [batch[t] for t in sorted(batch)], staging)
            for frame, reason in staging.rejected:
                report.rejected.append((frame, reason))
            for group, times in staging.added.items():
                report.staged[group.split("/")[0]].extend(times)
            for domain, spec in mosaics.items():
                if self._has_group(store, f"{domain}/{CONTRIBUTIONS}"):
                    built, pending = self._due_mosaics(store, domain, spec, now)
                    report.pending[domain].extend(pending)
                    self._upsert(store, domain, built, report)
            if report.n_written or staging.n_written:
                report.snapshot = session.commit(message)
                log.info("committed %d frames: %s", report.n_written, report.snapshot)
        return report

    @staticmethod
    def _has_group(store, path: str) -> bool:
        try:
            zarr.open_group(store, path=path, mode="r")
        except GroupNotFoundError:
            return False
        return True

    @classmethod
    def _has_frames(cls, store, group: str) -> bool:
        return cls._has_group(store, group) and "precip" in zarr.open_group(
            store, path=group, mode="r"
        )

    def _due_mosaics(
        self, store, domain: str, spec: MosaicSpec, now: pd.Timestamp
    ) -> tuple[list[Frame], list[pd.Timestamp]]:
        """Mosaic frames to (re)write, and slots still waiting for radars."""
        radars_group = zarr.open_group(store, path=f"{domain}/{CONTRIBUTIONS}", mode="r")
        parts = {
            node: xr.open_zarr(store, group=f"{domain}/{CONTRIBUTIONS}/{node}", consolidated=False)
            for node, _ in sorted(radars_group.groups())
        }
        stored: dict[pd.Timestamp, tuple[str, str]] = {}
        if self._has_frames(store, domain):
            current = xr.open_zarr(store, group=domain, consolidated=False)
            stored = {
                pd.Timestamp(t): (r, u)
                for t, r, u in zip(
                    current.time.values,
                    current.radars.values,
                    current.updates.values,
                    strict=True,
                )
            }
        slots = sorted({pd.Timestamp(t) for ds in parts.values() for t in ds.time.values})
        deadline = pd.Timedelta(minutes=spec.deadline_minutes)
        built, pending = [], []
        for slot in slots:
            present = [n for n, ds in parts.items() if slot in ds.indexes["time"]]
            before = stored.get(slot)
            if before is not None and before[0] == ",".join(present):
                continue
            complete = set(spec.radars) <= set(present) if spec.radars else True
            if not complete and now < slot + deadline:
                pending.append(slot)
                continue
            frames = [parts[n].sel(time=slot).load() for n in present]
            any_part = frames[0]
            grid = Grid.from_coords(
                any_part.crs.attrs["crs_wkt"], any_part.x.values, any_part.y.values
            )
            sites = [(parts[n].attrs["site_lon"], parts[n].attrs["site_lat"]) for n in present]
            updates = ""
            if before is not None:
                late = [n for n in present if n not in before[0].split(",")]
                updates = "; ".join(filter(None, [before[1], f"{','.join(late)} arrived late"]))
            built.append(
                Frame(
                    domain=domain,
                    time=slot,
                    grid=grid,
                    precip=merge([f.precip.values for f in frames], sites, grid, spec.method),
                    source_files=";".join(str(f.source_files.values) for f in frames),
                    source_sha256=";".join(str(f.source_sha256.values) for f in frames),
                    source_format="mosaic",
                    radars=",".join(present),
                    product=f"mosaic ({spec.method}) of {str(any_part.product.values)}",
                    scan_times="; ".join(
                        f"{n}: {f.scan_times.values}" for n, f in zip(present, frames, strict=True)
                    ),
                    updates=updates,
                    time_step_minutes=int(parts[present[0]].attrs.get("time_step_minutes", 5)),
                )
            )
        return built, pending

    def _encoding(self, grid: Grid) -> dict[str, dict[str, object]]:
        chunk = (1, min(self.chunk_yx, grid.ny), min(self.chunk_yx, grid.nx))
        enc: dict[str, dict[str, object]] = {
            "precip": {"chunks": chunk, "compressors": [self.codec], "dtype": "float32"},
            "time": dict(TIME_ENCODING, chunks=(4096,)),
        }
        for name in (*PROVENANCE_FIELDS, "wet_fraction"):
            enc[name] = {"chunks": (4096,)}
        return enc

    def _upsert(self, store, group: str, frames: list[Frame], report: WriteReport) -> None:
        """Add, replace (other source bytes) or skip (same bytes) time-ordered frames."""
        if not frames:
            return
        if not self._has_frames(store, group):
            _frames_dataset(frames).to_zarr(
                store,
                group=group,
                mode="a",
                consolidated=False,
                encoding=self._encoding(frames[0].grid),
            )
            report.added[group].extend(f.time for f in frames)
            return
        current = xr.open_zarr(store, group=group, consolidated=False)
        grid = Grid.from_coords(current.crs.attrs["crs_wkt"], current.x.values, current.y.values)
        times = pd.DatetimeIndex(current.time.values)
        hashes = current.source_sha256.values
        new: list[Frame] = []
        for frame in frames:
            if not frame.grid.same_as(grid):
                report.rejected.append(
                    (frame, f"grid differs from domain {group!r} ({grid.shape} cells)")
                )
                continue
            pos = times.searchsorted(frame.time)
            if pos < len(times) and times[pos] == frame.time:
                if hashes[pos] == frame.source_sha256:
                    report.unchanged[group].append(frame.time)
                else:  # a different source for a stored slot: supersede it (history keeps it)
                    self._write_region(store, group, _frames_dataset([frame]), pos)
                    report.replaced[group].append(frame.time)
                continue
            new.append(frame)
        if not new:
            return
        first = times.searchsorted(new[0].time)
        if first == len(times):
            _frames_dataset(new).drop_vars(["x", "y", "crs"]).to_zarr(
                store, group=group, append_dim="time", consolidated=False
            )
        else:  # out of order: rewrite the tail from the first insertion point, in time order
            tail = current.isel(time=slice(first, None)).drop_vars(["x", "y", "crs"]).load()
            incoming = _frames_dataset(new).drop_vars(["x", "y", "crs"])
            merged = xr.concat([tail, incoming], dim="time").sortby("time")
            n_tail = tail.sizes["time"]
            self._write_region(store, group, merged.isel(time=slice(0, n_tail)), first)
            merged.isel(time=slice(n_tail, None)).to_zarr(
                store, group=group, append_dim="time", consolidated=False
            )
        report.added[group].extend(f.time for f in new)

    @staticmethod
    def _write_region(store, domain: str, ds: xr.Dataset, pos: int) -> None:
        """Overwrite frames pos.. with ``ds``, time coordinate included (xarray's region
        writes leave index coordinates alone, so it is set through zarr)."""
        region = slice(pos, pos + ds.sizes["time"])
        ds.drop_vars(["x", "y", "crs"], errors="ignore").to_zarr(
            store, group=domain, region={"time": region}, consolidated=False
        )
        minutes = (pd.DatetimeIndex(ds.time.values) - pd.Timestamp("1970-01-01")) // pd.Timedelta(
            minutes=1
        )
        zarr.open_array(store, path=f"{domain}/time", mode="r+")[region] = np.asarray(
            minutes, dtype="int64"
        )


def open_archive(
    path: str | Path, domain: str | None = None, snapshot: str | None = None
) -> xr.Dataset:
    """The archive's ``domain`` (or its only domain) as a lazy xarray Dataset, as of the latest
    commit or of ``snapshot`` (an id from ``Archive.history``)."""
    return Archive(path).dataset(domain, snapshot)
