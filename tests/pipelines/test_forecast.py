"""Issuing forecasts: the forecast store, the forecasters and ``motioncast forecast``."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import TransformConfig
from pipelines.forecast.store import (
    Forecast,
    ForecastStore,
    ForecastStoreError,
    open_forecasts,
    summarise,
)
from pipelines.grid import Grid
from pipelines.serve.latest import LatestForecasts, NoForecasts, NoSuchLead
from tests.conftest import REPO, motioncast, promoted_registry

GRID = Grid.from_extent("EPSG:3035", (0.0, 0.0, 60e3, 40e3), 1000.0)  # 40 x 60 cells


def forecast(issue: str, value: float = 1.0, method: str = "extrapolation", **kw) -> Forecast:
    t = pd.Timestamp(issue)
    return Forecast(
        domain="d",
        issue_time=t,
        step_minutes=5,
        values=np.full((12, *GRID.shape), value, dtype=np.float32),
        grid=GRID,
        method=method,
        input_times=tuple(t - pd.Timedelta(minutes=5 * k) for k in range(5, -1, -1)),
        archive_snapshot="S1",
        **kw,
    )


def test_one_commit_per_forecast_read_back_sorted_with_its_provenance(tmp_path: Path):
    store = ForecastStore(tmp_path / "f", create=True)
    for issue, value in (("2026-06-01T12:00", 1.0), ("2026-06-01T12:10", 3.0)):
        assert store.write(forecast(issue, value)).status == "written"
    # a backfill, issued later than the one after it
    store.write(forecast("2026-06-01T12:05", 2.0, "motionrnn", model_version="v0002"))
    ds = open_forecasts(tmp_path / "f")
    assert list(pd.DatetimeIndex(ds.issue_time.values).strftime("%H:%M")) == [
        "12:00",
        "12:05",
        "12:10",
    ]
    assert ds.precip.isel(lead_time=0, y=3, x=7).values.tolist() == [1.0, 2.0, 3.0]
    assert list(ds.method.values) == ["extrapolation", "motionrnn", "extrapolation"]
    assert list(ds.model_version.values) == ["", "v0002", ""]
    assert ds.lead_time.values[[0, -1]].astype("timedelta64[m]").tolist() == [
        pd.Timedelta(minutes=5),
        pd.Timedelta(minutes=60),
    ]
    valid = ds.valid_time.sel(issue_time="2026-06-01T12:05").values
    assert pd.Timestamp(valid[-1]) == pd.Timestamp("2026-06-01T13:05")
    assert pd.Timestamp(ds.input_time.values[1, 0]) == pd.Timestamp("2026-06-01T11:40")
    assert ds.precip.attrs["units"] == "mm h-1" and "crs_wkt" in ds.crs.attrs
    assert ds.precip.encoding["chunks"] == (1, 12, 40, 60)
    messages = [m for _, m, _ in store.history()]
    assert messages[:3] == [
        "forecast d 2026-06-01T12:05:00 motionrnn v0002",
        "forecast d 2026-06-01T12:10:00 extrapolation",
        "forecast d 2026-06-01T12:00:00 extrapolation",
    ]


def test_a_stored_forecast_reads_back_whole_with_the_summary_it_was_made_with(tmp_path: Path):
    store = ForecastStore(tmp_path / "f", create=True)
    made = forecast("2026-06-01T12:00", 2.0, "motionrnn", model_version="v0003", reason="r")
    values = made.values.copy()
    values[:, :10] = np.nan  # unknown cells
    values[3, 20:, 30:] = 7.5
    made = dataclasses.replace(made, values=values)
    store.write(made)
    store.write(forecast("2026-06-01T11:55", 1.0))  # an earlier issue, written later
    back = store.forecast("d")  # the latest issue time, not the latest write
    assert back.issue_time == made.issue_time and back.grid.same_as(GRID)
    np.testing.assert_array_equal(back.values, values)
    assert (back.method, back.model_version, back.reason) == ("motionrnn", "v0003", "r")
    assert back.input_times == made.input_times and back.archive_snapshot == "S1"
    summary = summarise(made)
    assert store.summary("d") == summary
    assert summary["max_mm_h"] == 7.5 and summary["shape"] == [12, 40, 60]
    assert summary["area_over_1mm_h"][3] == 1.0 and summary["area_over_1mm_h"][0] == 1.0
    assert summary["valid_times"] == ["2026-06-01T12:05:00", "2026-06-01T13:00:00"]
    older = store.forecast("d", pd.Timestamp("2026-06-01T11:55"))
    assert float(older.values.max()) == 1.0
    with pytest.raises(ForecastStoreError, match="no forecast of domain 'd' issued at"):
        store.forecast("d", pd.Timestamp("2026-06-01T11:50"))


def test_latest_answers_are_made_once_per_commit(tmp_path: Path):
    store = ForecastStore(tmp_path / "f", create=True)
    latest = LatestForecasts(store)
    with pytest.raises(NoForecasts, match="no forecasts of domain 'd'"):
        latest.summary("d")
    store.write(forecast("2026-06-01T12:00", 2.0))
    first = latest.summary("d")
    assert first["issue_time"] == "2026-06-01T12:00:00"
    assert latest.summary("d") is first  # the same commit: not read again
    png = latest.png("d", lead=3)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and latest.png("d", lead=3) is png
    with pytest.raises(NoSuchLead, match="lead 13 beyond the forecast's 12 leads"):
        latest.png("d", lead=13)
    store.write(forecast("2026-06-01T12:05", 4.0))  # a new commit: new answers
    assert latest.summary("d")["issue_time"] == "2026-06-01T12:05:00"
    assert latest.summary("d")["max_mm_h"] == 4.0 and latest.png("d", lead=3) != png


def test_the_same_issue_time_again_changes_nothing_unless_replaced(tmp_path: Path):
    store = ForecastStore(tmp_path / "f", create=True)
    store.write(forecast("2026-06-01T12:00", 1.0))
    commits = len(store.history())
    assert store.write(forecast("2026-06-01T12:00", 5.0)).status == "exists"
    assert len(store.history()) == commits
    assert float(open_forecasts(tmp_path / "f").precip.max()) == 1.0
    result = store.write(forecast("2026-06-01T12:00", 5.0, reason="rerun"), replace=True)
    assert result.status == "replaced"
    ds = open_forecasts(tmp_path / "f")
    assert ds.sizes["issue_time"] == 1 and float(ds.precip.min()) == 5.0
    first = store.history()[-2][0]  # the replaced forecast stays in the history
    assert float(open_forecasts(tmp_path / "f", snapshot=first).precip.max()) == 1.0


def test_a_forecast_that_does_not_fit_the_domain_is_refused_whole(tmp_path: Path):
    store = ForecastStore(tmp_path / "f", create=True)
    store.write(forecast("2026-06-01T12:00"))
    short = forecast("2026-06-01T12:05")
    short = dataclasses.replace(short, values=short.values[:6])
    with pytest.raises(ForecastStoreError, match=r"holds leads \[5, .*, 60\] min"):
        store.write(short)
    other = Grid.from_extent("EPSG:3035", (0.0, 0.0, 60e3, 40e3), 2000.0)
    moved = dataclasses.replace(forecast("2026-06-01T12:05"), grid=other)
    with pytest.raises(ForecastStoreError, match="another grid"):
        store.write(moved)
    assert open_forecasts(tmp_path / "f").sizes["issue_time"] == 1


def test_maintenance_expires_old_history_and_keeps_every_forecast(tmp_path: Path):
    store = ForecastStore(tmp_path / "f", create=True)
    for minute in range(0, 30, 5):
        store.write(forecast(f"2026-06-01T12:{minute:02d}", float(minute)))
    before = len(store.history())  # 6 forecasts + the creation
    store.write(forecast("2026-06-01T12:00", 99.0), replace=True)  # its old chunks: garbage
    done = store.maintain(pd.Timedelta(0))
    assert before == 7 and done.expired_snapshots >= 6 and done.deleted_bytes > 0
    assert len(store.history()) == 2  # the tip and the repository's root
    ds = open_forecasts(tmp_path / "f")
    assert ds.precip.isel(lead_time=11, y=0, x=0).values.tolist() == [99, 5, 10, 15, 20, 25]
    kept = ForecastStore(tmp_path / "f").maintain(pd.Timedelta(days=1))
    assert kept.expired_snapshots == 0


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np, pandas as pd
    from pipelines.forecast.store import ForecastStore
    from tests.pipelines.test_forecast import GRID, forecast
    store = ForecastStore(sys.argv[1], chunk_yx=8, create=True)  # many chunks: a slow write
    for k in range(int(sys.argv[2])):
        t = pd.Timestamp("2026-06-01T12:00") + pd.Timedelta(minutes=5 * k)
        store.write(forecast(t.isoformat(), float(k + 1)))
    """
)


def test_a_writer_killed_mid_write_leaves_no_partial_forecast_and_the_rerun_completes(
    tmp_path: Path,
):
    path = tmp_path / "f"
    n = 40
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(n)], cwd=REPO, env={**os.environ}
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and writer.poll() is None:
        try:
            if len(ForecastStore(path).history()) >= 4:
                break
        except ForecastStoreError:
            pass
        time.sleep(0.01)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    ds = open_forecasts(path)
    stored = ds.sizes["issue_time"]
    assert 3 <= stored < n
    values = ds.precip.values  # every stored forecast whole: its own value in every cell
    for k in range(stored):
        assert np.all(values[k] == k + 1)
    subprocess.run([sys.executable, "-c", WRITER, str(path), str(n)], cwd=REPO, check=True)
    ds = open_forecasts(path)
    assert ds.sizes["issue_time"] == n
    assert ds.precip.isel(lead_time=0, y=0, x=0).values.tolist() == list(range(1, n + 1))


# ---- forecasters -----------------------------------------------------------------------


def storm_frames() -> np.ndarray:
    """Six frames of the synthetic storm on a 59 x 61 grid, a strip outside coverage."""
    from pipelines.simulate import truth_frames

    grid = Grid.from_extent("EPSG:3035", (3.9e6, 3.0e6, 3.9e6 + 122e3, 3.0e6 + 118e3), 2000.0)
    frames = np.stack(
        [f.precip for f in truth_frames("syn", grid, pd.Timestamp("2026-06-01"), 25, seed=3)]
    )
    frames[:, :, :5] = np.nan
    assert frames.shape == (6, 59, 61)
    return frames


def test_the_untrained_model_forecasts_like_sprog_on_a_domain_of_any_size(tmp_path: Path):
    """An untrained (sprog) model is pysteps' S-PROG nowcast, on a domain not a multiple of the
    patch too (S-PROG on the domain itself, the stack on it padded with unknown cells, cut
    back); unknown cells stay NaN."""
    from pipelines.nowcast import get_method
    from pipelines.nowcast.baselines import sprog
    from pipelines.nowcast.motion import motion_field

    frames = storm_frames()
    forecaster = get_method("motionrnn", promoted_registry(tmp_path))
    model, version = forecaster(frames, 12)
    assert (forecaster.name, version) == ("motionrnn", "v0001")
    reference = sprog(frames, 12, motion_field(frames, forecaster.transform))
    assert model.shape == reference.shape == (12, 59, 61)
    # unknown where S-PROG is unknown: the strip, and what moves in from it or the edge
    np.testing.assert_array_equal(np.isfinite(model), np.isfinite(reference))
    assert np.isnan(model[:, :, :5]).all() and np.isfinite(model).mean() > 0.4
    both = np.isfinite(model)
    wet = both & (reference > 1.0)
    # the same values (0.3 %: the model's scale ends at 23 dB, 199.5 mm/h, the storm's top),
    # but for a few near-ties that the match ranks in float32 against pysteps' float64
    assert np.isclose(model[wet], reference[wet], rtol=3e-3).mean() > 0.99
    events = (model[both] > 1.0) == (reference[both] > 1.0)
    assert events.mean() > 0.999


def test_bfloat16_inference_stays_close_to_float32(tmp_path: Path):
    import torch

    from pipelines.nowcast import get_method

    frames, registry = storm_frames(), promoted_registry(tmp_path)
    torch.manual_seed(0)
    exact = get_method("motionrnn", registry)
    fast = get_method("motionrnn", registry, precision="bfloat16")
    with torch.no_grad():  # a model that changes the advected field: bfloat16 then shows
        for p in fast.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    exact.model.load_state_dict(fast.model.state_dict())
    a, b = exact(frames, 12)[0], fast(frames, 12)[0]
    both = np.isfinite(a) & np.isfinite(b)
    assert (np.isfinite(a) != np.isfinite(b)).mean() < 0.01
    difference = np.abs(a - b)[both]
    assert 0 < difference.mean() < 0.05  # it did run in bfloat16, and stayed close
    assert ((a[both] > 1.0) == (b[both] > 1.0)).mean() > 0.98


def test_no_promoted_model_is_one_line_and_exit_1(tmp_path: Path):
    from pipelines.nowcast import NoModelError, get_method
    from pipelines.registry import Registry

    Registry(tmp_path / "empty").versions_dir.mkdir(parents=True)
    with pytest.raises(NoModelError, match="no model is promoted"):
        get_method("motionrnn", tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown baseline 'nope'"):
        get_method("nope")
    with pytest.raises(ValueError, match="needs 6 input frames"):
        get_method("motionrnn", promoted_registry(tmp_path))(np.zeros((4, 8, 8)), 3)


# ---- motioncast forecast ---------------------------------------------------------------


def test_cli_forecasts_equal_the_method_run_directly_and_bad_input_is_one_line(
    truth_archive: Path, tmp_path: Path
):
    from pipelines.nowcast.baselines import extrapolation
    from pipelines.nowcast.motion import motion_field
    from pipelines.store import open_archive

    fstore = tmp_path / "forecasts"
    common = ["--store", str(truth_archive), "--forecasts", str(fstore)]
    run = motioncast("forecast", *common, "--method", "extrapolation", "--json")
    assert run.returncode == 0, run.stderr
    (summary,) = json.loads(run.stdout)
    assert summary["status"] == "written" and summary["issue_time"] == "2026-06-01T06:00:00"
    assert summary["lead_minutes"] == list(range(5, 65, 5))
    archive = open_archive(truth_archive, "syn")
    frames = archive.precip.sel(time=slice("2026-06-01T05:35", "2026-06-01T06:00")).values
    direct = extrapolation(frames, 12, motion_field(frames, TransformConfig()))
    stored = open_forecasts(fstore, "syn").precip.isel(issue_time=-1).values
    np.testing.assert_array_equal(stored, direct)

    again = motioncast("forecast", *common, "--method", "sprog")
    assert again.returncode == 0 and "syn 2026-06-01T06:00:00: exists" in again.stderr
    back = motioncast("forecast", *common, "--method", "persistence", "--issue-time", "2026-13-01")
    assert back.returncode == 2 and "--issue-time '2026-13-01' is not a time" in back.stderr
    back = motioncast(
        "forecast", *common, "--method", "persistence", "--issue-time", "2026-06-01T05:00"
    )
    assert back.returncode == 0, back.stderr
    ds = open_forecasts(fstore, "syn")
    assert list(ds.method.values) == ["persistence", "extrapolation"]
    np.testing.assert_array_equal(
        ds.precip.isel(issue_time=0, lead_time=11).values,
        archive.precip.sel(time="2026-06-01T05:00").values,
    )

    for args, code, message in [
        (["--domain", "nowhere", "--method", "sprog"], 2, "no domain 'nowhere' (has: syn)"),
        (
            ["--issue-time", "2026-06-01T00:10", "--method", "sprog"],
            2,
            "no complete input window ending at 2026-06-01T00:10:00: 3 of 6 frames missing",
        ),
        (["--method", "motionrnn", "--registry", str(tmp_path / "none")], 1, "no model registry"),
        (["--method", "magic"], 2, "forecast.method: Input should be 'motionrnn', 'sprog'"),
    ]:
        bad = motioncast("forecast", *common, *args)
        assert bad.returncode == code, bad.stderr
        assert message in bad.stderr and "Traceback" not in bad.stderr
    assert open_forecasts(fstore, "syn").sizes["issue_time"] == 2


def test_cli_forecasts_with_the_promoted_model(truth_archive: Path, tmp_path: Path):
    registry = promoted_registry(tmp_path)
    run = motioncast(
        "forecast",
        "--store",
        str(truth_archive),
        "--forecasts",
        str(tmp_path / "f"),
        "--registry",
        str(registry),
    )
    assert run.returncode == 0, run.stderr
    assert "syn 2026-06-01T06:00:00: written by motionrnn v0001" in run.stderr
    ds = open_forecasts(tmp_path / "f")
    assert ds.model_version.values.tolist() == ["v0001"]
    assert ds.precip.shape == (1, 12, 64, 64)
