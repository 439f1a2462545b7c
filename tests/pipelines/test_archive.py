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
    assert ds.attrs["domain"] == "d" and ds.attrs["time_step_minutes"] == 5
    assert ds.present.values.all()
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
    assert values_by_time(open_archive(archive.location, snapshot=old_snapshot)) == [0.0, 1.0]


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
    assert open_archive(archive.location).present.values.tolist() == [True, False, True]


def test_missing_store_is_a_clear_error_and_leaves_no_folder(tmp_path: Path):
    with pytest.raises(ArchiveError, match="no archive store here"):
        open_archive(tmp_path / "nothing" / "here")
    assert not (tmp_path / "nothing").exists()  # regression: icechunk made the folders


# ---- the regular time axis ------------------------------------------------------------------
def at(minutes: float, value: float = 1.0, sha: str | None = None, step: int = 5) -> Frame:
    f = frame(0, sha=sha or f"sha-{minutes}")
    f.time = T0 + pd.Timedelta(minutes=minutes)
    f.precip[1:, :] = value
    f.time_step_minutes = step
    return f


def test_a_time_with_seconds_goes_into_its_slot_and_keeps_the_encoding(archive: Archive):
    """Regression: 12:10:30 after 12:00 and 12:05 made the domain read back as cftime dates,
    the new frame in the year 5354."""
    archive.write([at(0), at(5)], "a")
    archive.write([at(10.5, value=3.0)], "b")
    ds = open_archive(archive.location)
    assert ds.time.dtype == np.dtype("datetime64[ns]")
    assert list(ds.time.values) == list(pd.date_range(T0, periods=3, freq="5min"))
    assert ds.observed_time.values.tolist() == [
        "2026-06-01T12:00:00",
        "2026-06-01T12:05:00",
        "2026-06-01T12:10:30",
    ]
    assert values_by_time(ds) == [1.0, 1.0, 3.0]


def test_a_late_frame_is_one_region_write_into_its_slot(archive: Archive):
    """Regression: a frame older than the tail made the writer load and rewrite every frame
    after it. Now its commit changes its own slot's chunks and nothing else."""
    archive.write([at(5 * i, value=i) for i in range(12) if i != 3], "a")
    before = archive.head()
    report = archive.write([at(15, value=3)], "late")
    assert report.added["d"] == [T0 + pd.Timedelta(minutes=15)]
    diff = archive.repo.diff(from_snapshot_id=before, to_snapshot_id=archive.head())
    slot = 12 * 12 + 3  # the axis starts at the day's first slot; 12:15 is slot 147
    assert diff.updated_chunks["/d/precip"] == [[slot, 0, 0]]
    assert not diff.updated_arrays and not diff.new_arrays  # no resize, no rewrite
    ds = open_archive(archive.location)
    assert values_by_time(ds) == list(range(12)) and ds.present.values.all()


def test_gaps_are_nan_slots_and_the_axis_grows_in_blocks(archive: Archive):
    archive.write([at(0), at(20)], "a")  # 12:05 .. 12:15 missing
    ds = open_archive(archive.location)
    assert ds.present.values.tolist() == [True, False, False, False, True]
    assert np.isnan(ds.precip.values[1:4]).all()
    assert np.isnan(ds.wet_fraction.values[1:4]).all()
    raw = archive.repo.readonly_session(branch="main").store
    import zarr

    assert zarr.open_array(raw, path="d/time", mode="r").shape == (288,)  # one day, ahead
    (summary,) = archive.summary()
    assert summary.n_frames == 2 and len(summary.missing) == 3
    archive.write([at(60 * 24 + 5)], "next day")  # grows by one block
    assert zarr.open_array(
        archive.repo.readonly_session(branch="main").store, path="d/time", mode="r"
    ).shape == (576,)
    assert open_archive(archive.location).sizes["time"] == 12 * 24 + 2


def test_a_frame_before_the_domain_start_prepends_whole_blocks(archive: Archive):
    archive.write([at(0, value=1.0), at(10, value=2.0)], "a")
    archive.write([at(-60 * 24 - 5, value=7.0)], "backfill")  # a day and 5 minutes before
    ds = open_archive(archive.location)
    assert pd.Timestamp(ds.time.values[0]) == T0 - pd.Timedelta(minutes=60 * 24 + 5)
    assert int(ds.present.sum()) == 3
    assert float(ds.precip.sel(time=T0).isel(y=1, x=1)) == 1.0
    assert float(ds.precip.sel(time=T0 + pd.Timedelta(minutes=10)).isel(y=1, x=1)) == 2.0
    assert np.isnan(float(ds.precip.sel(time=T0 + pd.Timedelta(minutes=5)).isel(y=1, x=1)))
    assert str(ds.observed_time.sel(time=T0).values) == "2026-06-01T12:00:00"


def test_a_ten_minute_series_has_a_ten_minute_axis(archive: Archive):
    archive.write([at(10 * i, step=10) for i in range(6)], "a")
    (summary,) = archive.summary()
    assert summary.time_step_minutes == 10 and summary.missing == [] and summary.n_frames == 6
    report = archive.write([at(70, step=5)], "b")
    assert "5-minute series cannot go into domain 'd', whose step is 10" in report.rejected[0][1]


def test_a_slot_that_reads_as_its_fill_value_is_not_written_again():
    """Regression: a float32 NaN (what the empty wet_fraction slots hold) was not recognised as
    the array's NaN fill value, so growing the axis wrote every new slot of it anyway."""
    import zarr

    from pipelines.store.layout import reads_as as _reads_as

    group = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    wet = group.create_array("wet", shape=(4,), dtype="float32", fill_value=np.nan)
    present = group.create_array("present", shape=(4,), dtype="bool", fill_value=False)
    assert _reads_as(wet, np.float32("nan")) and _reads_as(wet, float("nan"))
    assert _reads_as(present, np.False_) and not _reads_as(present, np.True_)
    assert not _reads_as(wet, np.float32(0.0))
