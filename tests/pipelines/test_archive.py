"""The archive store on real Icechunk repositories: ordering, idempotency, snapshots, summary."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.frame import Frame
from pipelines.grid import Grid
from pipelines.store import Archive, ArchiveError, open_archive

GRID = Grid.from_extent("EPSG:3035", (4.0e6, 3.0e6, 4.03e6, 3.02e6), 1000.0)  # 20 x 30
T0 = pd.Timestamp("2026-06-01T12:00")


def frame(i: int, sha: str | None = None, domain: str = "d", grid: Grid = GRID) -> Frame:
    precip = np.full(grid.shape, float(i), dtype=np.float32)
    precip[0, 0] = np.nan
    return Frame(
        domain,
        T0 + pd.Timedelta(minutes=5 * i),
        grid,
        precip,
        f"f{i}.h5",
        sha or f"sha{i}",
        "test",
        radars="r1",
        product="p",
    )


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    return Archive(tmp_path / "archive", create=True)


def values_by_time(ds) -> list[float]:
    return [float(v) for v in ds.precip.isel(y=1, x=1).values]


def test_schema_is_cf_with_grid_mapping_and_provenance(archive: Archive):
    archive.write([frame(0), frame(1)], "first")
    ds = open_archive(archive.location)
    assert ds.precip.dims == ("time", "y", "x") and ds.precip.dtype == np.float32
    assert ds.precip.attrs["standard_name"] == "rainfall_rate"
    assert ds.precip.attrs["units"] == "mm h-1"
    assert ds.precip.attrs["grid_mapping"] == "crs"
    assert ds.crs.attrs["grid_mapping_name"] == "lambert_azimuthal_equal_area"
    assert ds.x.attrs["units"] == "m" and ds.x.values[0] == 4.0e6 + 500
    assert list(ds.source_files.values) == ["f0.h5", "f1.h5"]
    assert list(ds.radars.values) == ["r1", "r1"]
    assert np.isnan(ds.precip.values[:, 0, 0]).all()  # NaN (no coverage) survives
    assert ds.wet_fraction.values.tolist() == [0.0, 1.0]  # frame 1 rains 1 mm/h where seen


def test_out_of_order_frames_land_in_time_order(archive: Archive):
    archive.write([frame(0), frame(1), frame(4)], "a")
    archive.write([frame(3), frame(6)], "b")  # 3 goes between stored frames
    archive.write([frame(2), frame(5)], "c")
    ds = open_archive(archive.location)
    assert list(ds.time.values) == list(pd.date_range(T0, periods=7, freq="5min"))
    assert values_by_time(ds) == [0, 1, 2, 3, 4, 5, 6]
    assert ds.attrs["domain"] == "d" and ds.attrs["time_step_minutes"] == 5  # kept by appends
    assert list(ds.source_files.values) == [f"f{i}.h5" for i in range(7)]


def test_same_input_twice_changes_nothing(archive: Archive):
    first = archive.write([frame(0), frame(1)], "a")
    commits = len(archive.history())
    again = archive.write([frame(1), frame(0)], "a again")
    assert first.n_written == 2 and again.n_written == 0
    assert sorted(again.unchanged["d"]) == [frame(0).time, frame(1).time]
    assert again.snapshot is None and len(archive.history()) == commits  # not even a commit


def test_new_source_for_a_stored_slot_supersedes_it_and_history_keeps_the_old(archive: Archive):
    archive.write([frame(0), frame(1)], "a")
    old_snapshot = archive.history()[0][0]
    replacement = frame(1, sha="other")
    replacement.precip[:] = 9.0
    report = archive.write([replacement], "b")
    assert report.replaced["d"] == [replacement.time]
    assert values_by_time(open_archive(archive.location)) == [0.0, 9.0]
    old = archive.repo.readonly_session(snapshot_id=old_snapshot).store
    import xarray as xr

    assert values_by_time(xr.open_zarr(old, group="d", consolidated=False)) == [0.0, 1.0]


def test_readers_keep_their_snapshot(archive: Archive):
    archive.write([frame(0)], "a")
    before = open_archive(archive.location)
    archive.write([frame(1)], "b")
    assert before.sizes["time"] == 1 and float(before.precip[0, 1, 1]) == 0.0
    assert open_archive(archive.location).sizes["time"] == 2


def test_domains_summary_and_missing_slots(archive: Archive):
    other = Grid.from_extent("EPSG:3035", (0, 0, 10e3, 10e3), 1000.0)
    archive.write([frame(0), frame(1), frame(4), frame(0, domain="e", grid=other)], "a")
    assert archive.domains() == ["d", "e"]
    d = {s.domain: s for s in archive.summary()}["d"]
    assert d.n_frames == 3 and d.grid.shape == (20, 30)
    assert d.missing == [T0 + pd.Timedelta(minutes=10), T0 + pd.Timedelta(minutes=15)]
    assert d.as_dict()["n_missing"] == 2
    with pytest.raises(ArchiveError, match="holds domains d, e"):
        open_archive(archive.location)
    assert open_archive(archive.location, "e").sizes["time"] == 1


def test_frame_on_another_grid_is_rejected_not_stored(archive: Archive):
    archive.write([frame(0)], "a")
    shifted = Grid.from_extent("EPSG:3035", (4.001e6, 3.0e6, 4.031e6, 3.02e6), 1000.0)
    report = archive.write([frame(1, grid=shifted), frame(2)], "b")
    assert [reason for _, reason in report.rejected] == [
        "grid differs from domain 'd' ((20, 30) cells)"
    ]
    assert open_archive(archive.location).sizes["time"] == 2


def test_missing_store_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ArchiveError, match="no archive store here"):
        open_archive(tmp_path / "nothing")
