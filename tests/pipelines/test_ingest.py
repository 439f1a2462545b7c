"""Ingest end to end on real files: good files land, bad ones are quarantined with a reason,
reruns change nothing, and a writer killed mid-batch loses nothing committed."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipelines.config import load_config
from pipelines.ingest import ingest
from pipelines.ingest.run import decode_for_commit
from pipelines.store import Archive, open_archive
from tests.conftest import REPO, motioncast, wait_for_commits

SIM_DOMAINS = ["sim01", "sim02"]


def config(store: Path, **ingest_settings):
    return load_config(stores={"archive": {"location": store}}, ingest=ingest_settings or None)


def test_simulated_volumes_land_as_frames(sim_volumes: list[Path], tmp_path: Path):
    result = ingest([sim_volumes[0].parent], config(tmp_path / "a"))
    assert result.ok and result.files == 14
    assert dict(result.added) == {"sim01": 7, "sim02": 7}
    ds = open_archive(tmp_path / "a", "sim02")
    assert list(ds.time.values) == list(pd.date_range("2026-06-01T12:00", periods=7, freq="5min"))
    assert ds.product.values[0].startswith("lowest sweep 0.5 deg DBZH")
    assert ds.source_format.values[0] == "odim_pvol"
    wet = (ds.precip > 0).mean(("y", "x")).values
    assert ((wet > 0.02) & (wet < 0.6)).all()


def test_ingesting_twice_changes_nothing(sim_volumes: list[Path], tmp_path: Path):
    cfg = config(tmp_path / "a")
    ingest(sim_volumes[:4], cfg)
    commits = len(Archive(tmp_path / "a").history())
    again = ingest(sim_volumes[:4], cfg)
    assert sum(again.added.values()) == 0 and sum(again.unchanged.values()) == 4
    assert len(Archive(tmp_path / "a").history()) == commits


def test_out_of_order_arrival(sim_volumes: list[Path], tmp_path: Path):
    cfg = config(tmp_path / "a", batch_size=2)
    late_first = [p for p in sim_volumes if "sim01" in p.name][::-1]
    ingest(late_first[:3], cfg)  # 12:30, 12:25, 12:20
    ingest(late_first[3:], cfg)  # then 12:15 ... 12:00
    ds = open_archive(tmp_path / "a", "sim01")
    times = pd.DatetimeIndex(ds.time.values)
    assert times.is_monotonic_increasing and len(times) == 7
    expected = ingest([p for p in sim_volumes if "sim01" in p.name], config(tmp_path / "b"))
    assert expected.ok
    xr.testing.assert_identical(ds.load(), open_archive(tmp_path / "b", "sim01").load())


# ---- bad input --------------------------------------------------------------------------------
def _edit(src: Path, dst: Path, **what: str) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        for key, value in what.items():
            f["what"].attrs[key] = np.bytes_(value)
    return dst


def make_bad_files(folder: Path, volume: Path) -> dict[str, str]:
    """Bad files of every kind; maps file name to a fragment of the expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.h5").write_bytes(b"")
    (folder / "truncated.h5").write_bytes(volume.read_bytes()[: volume.stat().st_size // 3])
    (folder / "notes.txt").write_text("not radar data\n")
    with h5py.File(folder / "other.h5", "w") as f:
        f.create_group("experiment").attrs["x"] = 1
    with h5py.File(folder / "no_datasets.h5", "w") as f:  # ODIM header, no sweeps
        f.attrs["Conventions"] = np.bytes_("ODIM_H5/V2_2")
        f.create_group("what").attrs.update(
            {
                "object": np.bytes_("PVOL"),
                "date": np.bytes_("20260601"),
                "time": np.bytes_("120000"),
                "source": np.bytes_("NOD:bad01"),
            }
        )
        f.create_group("where").attrs.update({"lat": 52.0, "lon": 5.0, "height": 10.0})
    (folder / "AQC161931200F_00005.801.gif").write_bytes(b"GIF89a" + os.urandom(600))
    _edit(volume, folder / "future.h5", date="20990101")
    _edit(volume, folder / "prehistoric.h5", date="19000101")
    return {
        "empty.h5": "empty file",
        "truncated.h5": "unreadable HDF5",
        "notes.txt": "not a known radar format",
        "other.h5": "no known radar layout",
        "no_datasets.h5": "no sweep",
        "AQC161931200F_00005.801.gif": "GIF",
        "future.h5": "far from the nominal time",
        "prehistoric.h5": "far from the nominal time",
    }


def test_bad_files_are_quarantined_and_good_ones_still_land(
    sim_volumes: list[Path], tmp_path: Path
):
    inbox = tmp_path / "inbox"
    expected = make_bad_files(inbox / "bad", sim_volumes[0])
    for good in sim_volumes[:4]:
        shutil.copy(good, inbox / good.name)
    cfg = config(tmp_path / "store", batch_size=3)
    result = ingest([inbox], cfg)
    assert result.files == 12
    assert sum(result.added.values()) == 4  # the good files in the same batches landed
    assert len(result.failed) == len(expected)
    for name, fragment in expected.items():
        lines = [line for line in result.failed if Path(line.split(": ", 1)[0]).name == name]
        assert len(lines) == 1, name
        assert fragment in lines[0], lines[0]
        assert "\n" not in lines[0] and "Traceback" not in lines[0]
        kept = tmp_path / "store.quarantine" / name
        assert kept.exists() and (inbox / "bad" / name).exists()  # copied, original kept
        reason = kept.with_name(name + ".reason.txt").read_text()
        assert fragment in reason
    assert Archive(tmp_path / "store").domains() == ["sim01", "sim02"]


def test_impossible_times_are_rejected(sim_volumes: list[Path], tmp_path: Path):
    volume = sim_volumes[0]
    shifted = _edit(volume, tmp_path / "shifted.h5", date="20990101")
    with h5py.File(shifted, "r+") as f:  # sweeps agree with the header: a clock in the future
        for name in f:
            if name.startswith("dataset"):
                f[name]["what"].attrs["startdate"] = np.bytes_("20990101")
                f[name]["what"].attrs["enddate"] = np.bytes_("20990101")
                for key in ("startazT", "stopazT"):
                    f[name]["how"].attrs[key] += (
                        pd.Timestamp("2099-01-01") - pd.Timestamp("2026-06-01")
                    ).total_seconds()
    result = ingest([shifted], config(tmp_path / "s"))
    assert len(result.failed) == 1 and "is in the future" in result.failed[0]
    assert not (tmp_path / "s").exists() or Archive(tmp_path / "s").domains() == []


# ---- the command line, as a process ------------------------------------------------------------


@pytest.mark.slow
def test_cli_exit_codes_and_summary(sim_volumes: list[Path], tmp_path: Path):
    (tmp_path / "bad.h5").write_bytes(b"")
    store = str(tmp_path / "store")
    ok = motioncast("ingest", str(sim_volumes[0]), "--store", store)
    assert ok.returncode == 0, ok.stderr
    bad = motioncast("ingest", str(sim_volumes[1]), str(tmp_path / "bad.h5"), "--store", store)
    assert bad.returncode == 1
    assert f"{tmp_path / 'bad.h5'}: empty file (0 bytes)" in " ".join(bad.stderr.split())
    assert "Traceback" not in bad.stderr
    info = motioncast("archive", "info", "--store", store, "--json")
    assert info.returncode == 0
    assert '"n_frames": 1' in info.stdout
    missing = motioncast("archive", "info", "--store", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no archive store here" in missing.stderr


# ---- crash safety --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hour_of_volumes(tmp_path_factory) -> Path:
    from pipelines.config import MotioncastConfig
    from pipelines.simulate import simulate_network

    cfg = MotioncastConfig()
    out = tmp_path_factory.mktemp("hour")
    simulate_network(out, pd.Timestamp("2026-06-01T12:00"), 60, 2, 3, cfg.simulate, cfg.zr)
    return out


@pytest.mark.slow
def test_kill_9_mid_batch_loses_nothing_committed(hour_of_volumes: Path, tmp_path: Path):
    reference = tmp_path / "reference"
    assert ingest([hour_of_volumes], config(reference)).ok
    store = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "ingest",
        str(hour_of_volumes),
        "--store",
        str(store),
        "--workers",
        "1",
        "--set",
        "ingest.batch_size=4",
    ]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_commits(store, 5)  # the two domains created, two batches, then a little more
        time.sleep(0.25)  # into the next batch: decoding, maybe writing chunks
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed = Archive(store)
    counts = {d: open_archive(store, d).sizes["time"] for d in killed.domains()}
    assert 0 < sum(counts.values()) < 26 and sum(counts.values()) % 4 == 0  # whole batches only
    ref = {d: open_archive(reference, d).load() for d in SIM_DOMAINS}
    for domain in killed.domains():  # every stored frame is whole and right
        ds = open_archive(store, domain).load()
        xr.testing.assert_identical(ds, ref[domain].sel(time=ds.time))
    rerun = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    for domain in SIM_DOMAINS:
        xr.testing.assert_identical(open_archive(store, domain).load(), ref[domain])


def test_transient_read_errors_are_retried(sim_volumes: list[Path], tmp_path: Path, monkeypatch):
    from pipelines.ingest import decode_outcome

    cfg = load_config(ingest={"retries": 2, "retry_delay_seconds": 0})
    real = Path.read_bytes
    calls = {"n": 0}

    def flaky(self: Path) -> bytes:  # the first two reads hit a disk hiccup
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError(5, "Input/output error")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", flaky)
    outcome = decode_outcome(sim_volumes[0], cfg)
    assert outcome.ok and calls["n"] == 3
    calls["n"] = -10  # more failures than retries: reported, not raised
    outcome = decode_outcome(sim_volumes[0], cfg)
    assert not outcome.ok and "unreadable after 3 tries" in outcome.error


def test_unconfigured_domain_is_refused_before_touching_anything(sim_volumes, tmp_path: Path):
    with pytest.raises(ValueError, match="domain 'nowhere' is not configured"):
        ingest(sim_volumes[:1], config(tmp_path / "s"), domain="nowhere")
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.quarantine").exists()


# ---- regressions: bad cells, bad stores, same-named files ------------------------------------
def test_screening_finds_every_impossible_cell_infinities_too():
    """Regression for the two-pass screen: +inf and -inf are impossible values, not unknown
    (they were left in the frame), and a frame of only NaN has no valid data."""
    from pipelines.ingest.decode import _screen_values
    from pipelines.radar.errors import BadInputError

    clean = np.array([[0.0, 2.5], [np.nan, 1000.0]], dtype=np.float32)
    assert _screen_values(Path("f"), clean.copy(), 0.5) == ""
    bad = np.zeros((10, 10), dtype=np.float32)
    bad[0, :3] = [np.inf, -np.inf, 1000.5]
    bad[1, 0] = np.nan
    note = _screen_values(Path("f"), bad, 0.5)
    assert note.startswith("3 of 99 cells set to unknown: 1 negative (-inf to -inf mm/h), 2 above")
    assert np.isnan(bad[0, :3]).all() and np.isfinite(bad[2:]).all()
    with pytest.raises(BadInputError, match="every cell is missing"):
        _screen_values(Path("f"), np.full((3, 3), np.nan, dtype=np.float32), 0.5)


def test_a_few_impossible_cells_become_unknown_and_a_ten_minute_series_has_no_gaps(
    tmp_path: Path, caplog
):
    """Regression: on a day of real BoM 10-minute composites, 6 of 144 frames were quarantined
    for one cell of -0.1 mm each, and the series was reported with every other slot missing."""
    from tests.pipelines.test_composites import write_bom_rf3

    folder = tmp_path / "bom"
    folder.mkdir()
    for i in range(12):
        valid = pd.Timestamp("2026-06-01 12:00") + pd.Timedelta(minutes=10 * i)
        write_bom_rf3(
            folder / f"310_{valid:%Y%m%d_%H%M%S}.prcp-c10.nc",
            valid=str(valid),
            step_minutes=10,
            bad_cells=1 if i in (3, 7) else (200 if i == 9 else 0),
        )
    result = ingest([folder], config(tmp_path / "a", workers=1))  # logs in this process
    assert dict(result.added) == {"bom": 11}
    assert len(result.failed) == 1 and "310_20260601_133000" in result.failed[0]
    assert "4.9% of the valued cells are impossible: 200 negative" in result.failed[0]
    ds = open_archive(tmp_path / "a", "bom")
    (summary,) = Archive(tmp_path / "a").summary()
    assert summary.time_step_minutes == 10
    assert [t.strftime("%H:%M") for t in summary.missing] == ["13:30"]  # the rejected frame
    assert ds.quality.values[3] == "1 of 4096 cells set to unknown: 1 negative (-0.6 to -0.6 mm/h)"
    assert ds.quality.values[0] == ""
    assert np.isnan(ds.precip.values[3].ravel()[64 * 40]) and ds.present.values[3]
    assert "cells set to unknown" in caplog.text


def test_a_bad_store_is_one_line_exit_2_and_touches_nothing(sim_volumes, tmp_path: Path):
    """Regression: a file or a folder of other data as --store ended in a Rust panic traceback,
    exit 1, and the input files were not quarantined."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me\n")
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    bad_input = tmp_path / "bad.h5"
    bad_input.write_bytes(b"")
    for store, fragment in ((a_file, "is a file"), (other, "holding other files (cat.jpg)")):
        run = motioncast("ingest", str(sim_volumes[0]), str(bad_input), "--store", str(store))
        assert run.returncode == 2, run.stderr
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and fragment in lines[0], run.stderr
        assert "panic" not in run.stderr.lower() and "Traceback" not in run.stderr
        assert not store.with_name(store.name + ".quarantine").exists()
    assert a_file.read_text() == "keep me\n"
    assert sorted(p.name for p in other.iterdir()) == ["cat.jpg"]


def test_same_named_bad_files_are_all_kept_in_the_quarantine(sim_volumes, tmp_path: Path):
    """Regression: files of the same name from different folders overwrote each other."""
    for day, size in (("day1", 10), ("day2", 20)):
        (tmp_path / "in" / day).mkdir(parents=True)
        (tmp_path / "in" / day / "radar.h5").write_bytes(b"\0" * size)
    cfg = config(tmp_path / "store")
    ingest([tmp_path / "in"], cfg)
    ingest([tmp_path / "in"], cfg)  # again: the same files are not copied twice
    kept = sorted(p.name for p in (tmp_path / "store.quarantine").iterdir())
    assert kept == ["radar.h5", "radar.h5.reason.txt", "radar~1.h5", "radar~1.h5.reason.txt"]
    sizes = sorted(p.stat().st_size for p in (tmp_path / "store.quarantine").glob("radar*.h5"))
    assert sizes == [10, 20]


def test_a_new_domain_is_created_in_a_commit_of_its_own_before_its_first_batch(
    sim_volumes: list[Path], tmp_path: Path
):
    """The group's creation (about 150 store round trips) is the writer's first work, while the
    first batch fills, not part of the first batch's commit; a domain that exists is not
    created again, and the creation holds no frame (a reader sees an empty domain)."""
    cfg = config(tmp_path / "a", batch_size=4)
    result = ingest(sim_volumes[:6], cfg)
    assert result.ok
    history = list(reversed(Archive(tmp_path / "a").history()))
    assert result.snapshots == [sid for sid, _, _ in history[1:]]  # in the order committed
    messages = [m for _, m, _ in history]
    assert messages[1:3] == ["create domain sim01", "create domain sim02"]
    assert all(m.startswith("ingest") for m in messages[3:]) and len(messages) == 5
    first = [sid for sid, m, _ in Archive(tmp_path / "a").history() if m.endswith("sim01")][0]
    assert Archive(tmp_path / "a").dataset("sim01", snapshot=first).sizes["time"] == 0
    assert ingest(sim_volumes[6:], cfg).ok
    messages = [m for _, m, _ in Archive(tmp_path / "a").history()]
    assert sum(m.startswith("create domain") for m in messages) == 2


def test_a_batch_is_committed_once_its_frames_hold_batch_megabytes(tmp_path: Path):
    """Continental grids: 7 frames of 1 MB with ingest.batch_megabytes 2.5 are committed 3, 3
    and 1 at a time (not all 7 held at once, as batch_size 64 alone would)."""
    from pipelines.frame import Frame
    from pipelines.grid import Grid
    from pipelines.ingest.decode import DecodeOutcome
    from pipelines.ingest.run import ingest_outcomes

    grid = Grid.from_extent("EPSG:3035", (0.0, 0.0, 512e3, 512e3), 1000.0)  # 512 x 512: 1 MB
    t0 = pd.Timestamp("2026-06-01T12:00")
    outcomes = [
        DecodeOutcome(
            tmp_path / f"f{i}",
            Frame(
                "big",
                t0 + pd.Timedelta(minutes=5 * i),
                grid,
                np.full(grid.shape, 1.0, np.float32),
                f"f{i}",
                f"sha{i}",
                "test",
            ),
        )  # fmt: skip
        for i in range(7)
    ]
    cfg = load_config(
        stores={"archive": {"location": tmp_path / "a"}}, ingest={"batch_megabytes": 2.5}
    )
    result = ingest_outcomes(outcomes, cfg)
    assert result.ok and result.added["big"] == 7 and len(result.snapshots) == 4  # + creation
    messages = [m for _, m, _ in Archive(tmp_path / "a").history() if m.startswith("ingest")]
    assert sorted(messages) == sorted(
        ["ingest 3 frames into big", "ingest 3 frames into big", "ingest 1 frames into big"]
    )


_STARTS = "MOTIONCAST_TEST_DECODE_LOG"


def _logged_decode(path: Path, cfg, domain):
    """The decoding processes' work, each start written down (a line per file)."""
    with open(os.environ[_STARTS], "a") as log:
        log.write(f"{time.monotonic()}\n")
    return decode_for_commit(path, cfg, domain)


def test_decoding_runs_only_decode_ahead_files_ahead_of_a_slow_store(
    sim_volumes: list[Path], tmp_path: Path, monkeypatch
):
    """Regression: every file was submitted to the decoding processes at once, so a store slower
    than decoding (object storage, continental frames) piled up every frame of the run in the
    committing process. Now decoding stays ingest.decode_ahead files ahead of what is taken."""
    from pipelines.ingest import run
    from pipelines.store.archive import Archive as ArchiveClass

    starts = tmp_path / "starts.txt"
    monkeypatch.setenv(_STARTS, str(starts))
    monkeypatch.setattr(run, "decode_for_commit", _logged_decode)
    written: list[float] = []
    write = ArchiveClass.write

    def slow_write(self, frames, *args, **kwargs):
        time.sleep(1.0)
        report = write(self, frames, *args, **kwargs)
        written.append(time.monotonic())
        return report

    monkeypatch.setattr(ArchiveClass, "write", slow_write)
    cfg = config(tmp_path / "a", batch_size=2, workers=2, decode_ahead=2)
    result = ingest(sim_volumes, cfg)
    assert result.ok and sum(result.added.values()) == len(sim_volumes) == 14
    started = [float(line) for line in starts.read_text().split()]
    before_first_commit = sum(t < written[0] for t in started)
    # taken before the writer blocks the taker: a batch written, a batch filled, one more
    # waiting for the writer; and decode_ahead beyond them
    assert before_first_commit <= 2 + 2 + 1 + 2, (before_first_commit, len(started))
