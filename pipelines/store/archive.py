"""The archive: observed rain rate, precip(time, y, x) in mm/h, one Zarr group per domain.

Every write is one Icechunk commit: readers see whole frames only, a writer killed before its
commit leaves the store as of the last commit, and a frame already stored from the same source
bytes is skipped. Each domain has a regular time axis on its step (pipelines.store.timeaxis): a
frame goes into its nominal slot, however late it arrives, as one region write; slots with no
frame hold NaN and ``present`` False.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from pipelines.config import ObjectStorageConfig
from pipelines.frame import Frame
from pipelines.grid import Grid
from pipelines.store.encoded import stored_precip
from pipelines.store.layout import (
    CONTRIBUTIONS,
    LAT_ATTRS,
    LON_ATTRS,
    PRECIP_ATTRS,
    SLOT_ATTRS,
    SLOT_VARIABLES,
    TIME_CHUNK,
    X_ATTRS,
    Y_ATTRS,
    as_stored,
    empty_slots,
    reads_as,
    slot_values,
)
from pipelines.store.mosaic import MosaicSpec, merge
from pipelines.store.repository import StoreError, VersionedStore, has_group
from pipelines.store.timeaxis import TIME_ATTRS, TIME_UNITS, TimeAxis, slot_of

log = logging.getLogger(__name__)


class ArchiveError(StoreError):
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
            "units": "deg" if self.grid.crs.is_geographic else "m",  # of resolution, extent
            "resolution": [self.grid.dx, self.grid.dy],
            "extent": list(self.grid.extent),
            "n_frames": self.n_frames,
            "start": self.start.isoformat() if self.start is not None else None,
            "end": self.end.isoformat() if self.end is not None else None,
            "time_step_minutes": self.time_step_minutes,
            "n_missing": len(self.missing),
            "missing": [t.isoformat() for t in self.missing],
        }


class Archive(VersionedStore):
    """An archive store at a local path (or s3:// / gs:// URL)."""

    error = ArchiveError
    missing = "no archive store here (run 'motioncast ingest' first)"
    section = "archive"

    def __init__(
        self,
        location: str | Path,
        chunk_yx: int = 1024,
        compression_level: int = 1,
        time_block_hours: float = 24.0,
        create: bool = False,
        storage: ObjectStorageConfig | None = None,
    ):
        super().__init__(location, chunk_yx, compression_level, create, storage)
        self.time_block_hours = time_block_hours

    # ---- reading -------------------------------------------------------------------------
    def dataset(self, domain: str | None = None, snapshot: str | None = None) -> xr.Dataset:
        """The domain's frames as a lazy xarray Dataset, from the latest commit or ``snapshot``.

        The time axis is regular, from the domain's first frame to its last: a slot with no
        frame has ``present`` False and NaN precip.
        """
        domain = self.resolve_domain(domain, snapshot)
        return self._frames(self._read_store(snapshot), domain)

    def _frames(self, store, group: str) -> xr.Dataset:
        """A group cut to the span of its stored frames."""
        self._axis(store, group)  # checks the time encoding first
        ds = xr.open_zarr(store, group=group, consolidated=False)
        present = np.flatnonzero(ds.present.values)
        span = slice(present[0], present[-1] + 1) if len(present) else slice(0, 0)
        return ds.isel(time=span)

    def summary(self) -> list[DomainSummary]:
        out = []
        for name in self.domains():
            ds = self.dataset(name)
            present = ds.present.values
            times = pd.DatetimeIndex(ds.time.values)
            out.append(
                DomainSummary(
                    domain=name,
                    grid=Grid.from_coords(ds.crs.attrs["crs_wkt"], ds.x.values, ds.y.values),
                    n_frames=int(present.sum()),
                    start=times[0] if len(times) else None,
                    end=times[-1] if len(times) else None,
                    time_step_minutes=int(ds.attrs["time_step_minutes"]),
                    missing=list(times[~present]),
                )
            )
        return out

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
        direct: dict[str, list[Frame]] = defaultdict(list)
        staged: dict[str, list[Frame]] = defaultdict(list)
        for frame in frames:
            if frame.domain in mosaics and frame.site_lonlat is not None:
                staged[f"{frame.domain}/{CONTRIBUTIONS}/{frame.radars}"].append(frame)
            else:
                direct[frame.domain].append(frame)
        if not direct and not staged and not mosaics:
            return WriteReport()
        report, snapshot = self._commit(
            lambda store: self._stage(store, direct, staged, mosaics, now), message
        )
        report.snapshot = snapshot
        if snapshot is not None:
            log.info("committed %d frames: %s", report.n_written, snapshot)
        return report

    def prepare(self, frame: Frame) -> str | None:
        """Create the group of ``frame``'s domain, empty, on the time block of its slot, as a
        commit of its own, unless the group is there: ingest asks for it at a new domain's
        first frame, so that a group's creation (about 150 store round trips) runs while the
        first batch is decoded instead of delaying the batch's commit. Returns the snapshot
        (None when the group existed)."""

        def stage(store) -> tuple[None, bool]:
            if self._has_frames(store, frame.domain):
                return None, False
            step = frame.time_step_minutes
            slot = slot_of(frame.time, step)
            axis = TimeAxis.for_step(step, self.time_block_hours).covering(slot, slot)
            self._create(store, frame.domain, axis, frame)
            return None, True

        _, snapshot = self._commit(stage, f"create domain {frame.domain}")
        return snapshot

    def _stage(
        self,
        store,
        direct: dict[str, list[Frame]],
        staged: dict[str, list[Frame]],
        mosaics: dict[str, MosaicSpec],
        now: pd.Timestamp,
    ) -> tuple[WriteReport, bool]:
        """Write every frame into an open session; report, and whether anything changed."""
        report = WriteReport()
        for group, batch in direct.items():
            self._upsert(store, group, batch, report)
        staging = WriteReport()
        for group, batch in staged.items():
            self._upsert(store, group, batch, staging)
        for frame, reason in staging.rejected:
            report.rejected.append((frame, reason))
        for group, times in staging.added.items():
            report.staged[group.split("/")[0]].extend(times)
        for domain, spec in mosaics.items():
            if has_group(store, f"{domain}/{CONTRIBUTIONS}"):
                built, pending = self._due_mosaics(store, domain, spec, now)
                report.pending[domain].extend(pending)
                self._upsert(store, domain, built, report)
        return report, bool(report.n_written or staging.n_written)

    @classmethod
    def _has_frames(cls, store, group: str) -> bool:
        return has_group(store, group) and "precip" in zarr.open_group(store, path=group, mode="r")

    def _due_mosaics(
        self, store, domain: str, spec: MosaicSpec, now: pd.Timestamp
    ) -> tuple[list[Frame], list[pd.Timestamp]]:
        """Mosaic frames to (re)write, and slots still waiting for radars."""
        radars_group = zarr.open_group(store, path=f"{domain}/{CONTRIBUTIONS}", mode="r")
        parts = {
            node: self._frames(store, f"{domain}/{CONTRIBUTIONS}/{node}")
            for node, _ in sorted(radars_group.groups())
        }
        slots_of = {
            n: set(pd.DatetimeIndex(ds.time.values[ds.present.values])) for n, ds in parts.items()
        }
        stored: dict[pd.Timestamp, tuple[str, str]] = {}
        if self._has_frames(store, domain):
            current = self._frames(store, domain)
            keep = current.present.values
            stored = {
                pd.Timestamp(t): (r, u)
                for t, r, u in zip(
                    current.time.values[keep],
                    current.radars.values[keep],
                    current.updates.values[keep],
                    strict=True,
                )
            }
        deadline = pd.Timedelta(minutes=spec.deadline_minutes)
        built, pending = [], []
        for slot in sorted(set().union(*slots_of.values())):
            present = [n for n in parts if slot in slots_of[n]]
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
                    quality="; ".join(
                        f"{n}: {f.quality.values}"
                        for n, f in zip(present, frames, strict=True)
                        if str(f.quality.values)
                    ),
                    time_step_minutes=int(parts[present[0]].attrs["time_step_minutes"]),
                )
            )
        return built, pending

    # ---- the regular time axis -------------------------------------------------------------
    @staticmethod
    def _axis(store, group: str) -> TimeAxis:
        """The group's time axis, after checking that its encoding is the one we write."""
        node = zarr.open_group(store, path=group, mode="r")
        if "present" not in node or node["time"].attrs.get("units") != TIME_UNITS:
            raise ArchiveError(
                f"group {group!r} was written by an older motioncast (no regular time axis): "
                "ingest its files again into a new archive"
            )
        time = node["time"]
        return TimeAxis(
            start=int(time[0]),
            step=int(node.attrs["time_step_minutes"]),
            length=time.shape[0],
            block=int(node.attrs["time_block_slots"]),
        )

    def _create(self, store, group: str, axis: TimeAxis, first: Frame) -> None:
        """An empty group on ``axis``: no precip chunk is written until a frame arrives.

        xarray writes the group with no slot (its conventions, attributes and encodings), and
        ``_extend`` grows it to ``axis``: a lazy, full-length precip would need dask, whose graph
        costs 0.17 s a group (and 0.3 s of imports a process) for nothing written."""
        grid = first.grid
        cy, cx = self.chunk_edges(grid)
        data: dict[str, tuple] = {
            "precip": (
                ("time", "y", "x"),
                np.empty((0, grid.ny, grid.nx), dtype=np.float32),
                PRECIP_ATTRS,
            ),
            "crs": ((), np.int8(0), grid.cf_grid_mapping()),
        }
        for name, values in empty_slots(0).items():
            data[name] = (("time",), values, SLOT_ATTRS.get(name, {}))
        attrs = {
            "Conventions": "CF-1.10",
            "title": f"motioncast archive: observed rain rate, domain {first.domain}",
            "domain": first.domain,
            "time_step_minutes": axis.step,
            "time_block_slots": axis.block,
        }
        if first.site_lonlat is not None:
            attrs["site_lon"], attrs["site_lat"] = first.site_lonlat
        ds = xr.Dataset(
            data,
            attrs=attrs,
            coords={
                "time": ("time", np.empty(0, dtype=np.int64), TIME_ATTRS),  # raw minutes
                "y": ("y", grid.y, LAT_ATTRS if grid.crs.is_geographic else Y_ATTRS),
                "x": ("x", grid.x, LON_ATTRS if grid.crs.is_geographic else X_ATTRS),
            },
        )
        encoding: dict[str, dict[str, object]] = {
            "precip": {
                "chunks": (1, cy, cx),
                "compressors": [self.codec],
                "dtype": "float32",
                "_FillValue": np.nan,
            },
            "time": {"chunks": (TIME_CHUNK,)},
        }
        for name in SLOT_VARIABLES:
            encoding[name] = {"chunks": (TIME_CHUNK,)}
        ds.to_zarr(store, group=group, mode="a", consolidated=False, encoding=encoding)
        self._extend(store, group, TimeAxis(axis.start, axis.step, 0, axis.block), axis)

    @staticmethod
    def _extend(store, group: str, old: TimeAxis, new: TimeAxis) -> None:
        """Grow the group to ``new`` (whole blocks before and/or after ``old``).

        Slots added after the end are empty. Slots added before the start shift every stored
        frame by a whole number of blocks, one frame at a time: memory stays one frame, however
        long the archive (a backfill older than the domain is rare; a late frame never does it).
        """
        node = zarr.open_group(store, path=group, mode="r+")
        arrays = dict(node.arrays())  # one call, not one per array (each costs a round trip)
        shift = (old.start - new.start) // new.step
        slot_values = {name: arrays[name][:] for name in SLOT_VARIABLES} if shift else {}
        for name in ("precip", "time", *SLOT_VARIABLES):
            arrays[name].resize((new.length, *arrays[name].shape[1:]))
        arrays["time"][:] = new.minutes()
        empty = empty_slots(new.length)
        for name in SLOT_VARIABLES:
            array, values = arrays[name], empty[name]
            if shift:
                values[shift : shift + old.length] = slot_values[name]
                array[:] = as_stored(array, values)
            elif not reads_as(array, values[0]):  # else the new slots read empty already
                array[old.length :] = as_stored(array, values[old.length :])
        if shift:
            precip = arrays["precip"]
            was = np.flatnonzero(slot_values["present"])
            for i in was[::-1]:  # back to front: a frame never overwrites one not yet moved
                precip[i + shift] = precip[i]
            for i in sorted(set(was.tolist()) - set((was + shift).tolist())):
                precip[i] = np.nan

    def _upsert(self, store, group: str, frames: list[Frame], report: WriteReport) -> None:
        """Write frames into their slots: add, replace (other source bytes) or skip (same bytes).

        A later frame for the same slot in one batch wins. Each frame is one region write.
        """
        if not frames:
            return
        if self._has_frames(store, group):
            axis = self._axis(store, group)
            node = zarr.open_group(store, path=group, mode="r")
            crs = node["crs"].attrs["crs_wkt"]
            grid = Grid.from_coords(crs, node["x"][:], node["y"][:])
        else:  # a new group takes the grid and the step of its first frame
            axis, grid = None, frames[0].grid
        step = axis.step if axis is not None else frames[0].time_step_minutes
        by_slot: dict[pd.Timestamp, Frame] = {}
        for frame in frames:
            if not frame.grid.same_as(grid):
                report.rejected.append(
                    (frame, f"grid differs from domain {group!r} ({grid.shape} cells)")
                )
                continue
            if frame.time_step_minutes != step:
                report.rejected.append(
                    (
                        frame,
                        f"a {frame.time_step_minutes}-minute series cannot go into domain "
                        f"{group!r}, whose step is {step} minutes",
                    )
                )
                continue
            by_slot[slot_of(frame.time, step)] = frame
        if not by_slot:
            return
        slots = sorted(by_slot)
        if axis is None:
            axis = TimeAxis.for_step(step, self.time_block_hours).covering(slots[0], slots[-1])
            self._create(store, group, axis, by_slot[slots[0]])
        else:
            grown = axis.covering(slots[0], slots[-1])
            if grown != axis:
                log.info(
                    "%s: time axis grows to %d slots from %s", group, grown.length, grown.times()[0]
                )
                self._extend(store, group, axis, grown)
                axis = grown
        node = zarr.open_group(store, path=group, mode="r+")
        arrays = dict(node.arrays())  # one call, not one per array (each costs a round trip)
        index = np.array([axis.index(s) for s in slots])
        was_present = arrays["present"].get_orthogonal_selection(index).astype(bool)
        hashes = arrays["source_sha256"].get_orthogonal_selection(index)
        writes: list[tuple[int, Frame]] = []
        for slot, i, present, sha in zip(slots, index, was_present, hashes, strict=True):
            frame = by_slot[slot]
            if present and sha == frame.source_sha256:
                report.unchanged[group].append(slot)
                continue
            (report.replaced if present else report.added)[group].append(slot)
            writes.append((int(i), frame))  # a replaced slot's old frame stays in the history
        for i, frame in writes:
            stored_precip(arrays["precip"], i, frame.precip)
        if writes:
            where = np.array([i for i, _ in writes])
            values = [slot_values(f) for _, f in writes]
            for name in SLOT_VARIABLES:
                column = np.array([v[name] for v in values], dtype=object)
                arrays[name].set_orthogonal_selection(where, as_stored(arrays[name], column))


def open_archive(
    path: str | Path,
    domain: str | None = None,
    snapshot: str | None = None,
    storage: ObjectStorageConfig | None = None,
) -> xr.Dataset:
    """The archive's ``domain`` (or its only domain) as a lazy xarray Dataset, as of the latest
    commit or of ``snapshot`` (an id from ``Archive.history``). ``path`` is a folder or an
    s3:// URL (``storage`` or the AWS_* environment variables say how to reach it)."""
    return Archive(path, storage=storage).dataset(domain, snapshot)
