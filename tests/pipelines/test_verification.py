"""Verification: issued forecasts scored against the archive beside the baselines, stored as
pysteps' sums, pooled over any period."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from pysteps.verification.detcatscores import det_cat_fct

from pipelines.config import load_config
from pipelines.forecast.issue import issue
from pipelines.forecast.store import ForecastStore
from pipelines.grid import Grid
from pipelines.nowcast import get_method
from pipelines.simulate import truth_frames
from pipelines.store import Archive
from pipelines.verification.store import ISSUED, ScoresStore
from pipelines.verification.verify import score_spec, verify
from tests.conftest import motioncast

T0 = pd.Timestamp("2026-06-01T00:00")


def test_due_forecasts_are_scored_once_beside_the_baselines_on_the_same_cells(issued):
    cfg, frames = issued
    (done,) = verify(cfg)
    # issued 00:25 .. 02:25; observed to 03:00: those issued by 02:00 are complete
    assert (done.domain, done.scored, done.waiting) == ("v", 7, 2) and done.snapshot
    scores = ScoresStore(cfg.stores.scores.location)
    assert scores.scored("v")[[0, -1]].strftime("%H:%M").tolist() == ["00:25", "01:55"]
    again = verify(cfg)[0]
    assert (again.scored, again.snapshot) == (0, None)  # nothing new: no commit
    pooled = scores.pool("v")
    assert pooled.issues == 7 and pooled.issued_methods == {"extrapolation": 7}
    s = {name: sc.summary() for name, sc in pooled.scores.items()}
    assert set(s) == {ISSUED, "persistence", "extrapolation"}
    # the issued forecast is extrapolation on the same inputs: the same scores exactly
    assert s[ISSUED]["per_lead"]["csi_1mm"] == s["extrapolation"]["per_lead"]["csi_1mm"]
    assert s[ISSUED]["mae"] == s["extrapolation"]["mae"]
    # the storm moves: advection beats persistence at 30 minutes and over the hour
    assert s["extrapolation"]["per_lead"]["csi_1mm"][5] > s["persistence"]["per_lead"]["csi_1mm"][5]
    assert s["extrapolation"]["csi_1mm"] > s["persistence"]["csi_1mm"]
    for key in ("pod_0.1mm", "far_5mm", "bias_10mm", "fss_5mm_5", "rmse", "me"):
        assert key in s[ISSUED]


def test_scores_equal_pysteps_on_the_pooled_cells_and_unknown_is_never_dry(issued):
    cfg, frames = issued
    verify(cfg)
    forecasts = ForecastStore(cfg.stores.forecasts.location)
    by_time = {f.time: f.precip for f in frames}
    pooled = ScoresStore(cfg.stores.scores.location).pool(
        "v", until=pd.Timestamp("2026-06-01T00:40")
    )
    assert pooled.issues == 2  # 00:25 and 00:40
    fc, ob = [], []
    for t in pd.DatetimeIndex(["2026-06-01T00:25", "2026-06-01T00:40"]):
        f = forecasts.forecast("v", t)
        lead = 2  # 15 minutes
        fc.append(f.values[lead])
        ob.append(by_time[t + pd.Timedelta(minutes=15)])
    fc, ob = np.stack(fc), np.stack(ob)
    # the extrapolation baseline NaNs what comes from the strip: the issued forecast too; no
    # cell outside coverage is ever scored, as dry or otherwise
    cells = np.isfinite(fc) & np.isfinite(ob)
    assert not cells[:, :, :6].any()
    direct = det_cat_fct(np.where(cells, fc, np.nan), np.where(cells, ob, np.nan), 1.0, ["CSI"])
    got = pooled.scores[ISSUED].summary()["per_lead"]["csi_1mm"][2]
    assert got == pytest.approx(direct["CSI"], abs=1e-6)
    # periods pool exactly: the two halves merged are the whole
    store = ScoresStore(cfg.stores.scores.location)
    early = store.pool("v", until=pd.Timestamp("2026-06-01T01:10"))
    late = store.pool("v", since=pd.Timestamp("2026-06-01T01:11"))
    whole = store.pool("v").scores[ISSUED].summary()
    merged = early.scores[ISSUED].merge(late.scores[ISSUED]).summary()
    assert early.issues + late.issues == 7
    assert merged["per_lead"]["csi_5mm"] == whole["per_lead"]["csi_5mm"]
    assert merged["mae"] == pytest.approx(whole["mae"], rel=1e-9)


def test_another_score_layout_is_refused_whole(issued):
    cfg, _ = issued
    verify(cfg)
    commits = len(ScoresStore(cfg.stores.scores.location).history())
    other = cfg.model_copy(
        update={"verify": cfg.verify.model_copy(update={"thresholds_mm_h": [2.0]})}
    )
    # more forecasts, due now, of a layout the store does not hold
    archive = Archive(cfg.stores.archive.location)
    forecasts = ForecastStore(cfg.stores.forecasts.location)
    issue(archive, forecasts, get_method("persistence"), "v", 6, 60, T0 + pd.Timedelta(hours=1))
    (refused,) = verify(other)  # the domain is reported, nothing written
    assert refused.scored == 0 and "another layout" in refused.error
    assert len(ScoresStore(cfg.stores.scores.location).history()) == commits
    assert score_spec(cfg.verify, 12).thresholds == (0.1, 1.0, 5.0, 10.0)


def test_cli_scores_pools_and_reports_with_plots_and_bad_input_is_one_line(issued, tmp_path):
    cfg, _ = issued
    stores = [
        "--store",
        cfg.stores.archive.location,
        "--forecasts",
        cfg.stores.forecasts.location,
        "--scores",
        cfg.stores.scores.location,
    ]
    done = motioncast(
        "verify", *stores, "--out", str(tmp_path / "report"), "--set", "verify.fss_scales=[1,5]"
    )
    assert done.returncode == 0, done.stderr
    assert "v: 7 scored, 2 wait for observations" in done.stderr
    for method in ("issued", "persistence", "extrapolation"):
        assert method in done.stdout
    assert "issued by extrapolation (7)" in done.stdout
    plots = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert plots == ["v_bias_lead.png", "v_csi_lead.png", "v_fss_scale.png", "v_mae_lead.png"]
    assert all((tmp_path / "report" / p).read_bytes()[:4] == b"\x89PNG" for p in plots)
    pooled = motioncast("verify", *stores, "--no-score", "--until", "2026-06-01T00:40", "--json")
    assert pooled.returncode == 0, pooled.stderr
    report = json.loads(pooled.stdout)["v"]
    assert set(report) == {"issued", "persistence", "extrapolation"}
    assert len(report["issued"]["per_lead"]["csi_1mm"]) == 12
    bad = motioncast("verify", *stores, "--since", "yesterday")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--since" in bad.stderr
    (tmp_path / "file").write_text("x")
    bad = motioncast("verify", *stores[:4], "--scores", str(tmp_path / "file"))
    assert bad.returncode == 2 and "is a file" in bad.stderr


def test_plot_verbs_draw_a_forecast_beside_the_observation(issued, tmp_path):
    from PIL import Image

    cfg, _ = issued
    stores = ["--store", cfg.stores.archive.location, "--forecasts", cfg.stores.forecasts.location]
    sites = '--set=plot.sites=[{"name": "r1", "lon": 8.2, "lat": 50.5}]'
    panel = motioncast(
        "plot",
        "panel",
        *stores,
        "--issue-time",
        "2026-06-01T00:40",
        sites,
        "--out",
        str(tmp_path / "panel.png"),
    )
    assert panel.returncode == 0, panel.stderr
    assert panel.stdout.strip().endswith("panel.png")
    assert (tmp_path / "panel.png").read_bytes()[:4] == b"\x89PNG"
    gif = motioncast("plot", "gif", *stores, "--out", str(tmp_path / "f.gif"))
    assert gif.returncode == 0, gif.stderr
    with Image.open(tmp_path / "f.gif") as image:
        assert image.format == "GIF" and image.n_frames == 12
    one = motioncast(
        "plot", "map", "--forecast", *stores, "--lead", "3", "--out", str(tmp_path / "m.png")
    )
    assert one.returncode == 0 and (tmp_path / "m.png").exists(), one.stderr
    bad = motioncast(
        "plot", "map", "--forecast", *stores, "--lead", "13", "--out", str(tmp_path / "x.png")
    )
    assert bad.returncode == 2 and "the forecast has 12 leads" in bad.stderr
    bad = motioncast("plot", "gif", *stores, "--domain", "w", "--out", str(tmp_path / "x.gif"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no domain 'w'" in bad.stderr
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.gif").exists()


def test_a_missing_valid_time_waits_for_the_grace_and_inputs_are_as_issued(tmp_path):
    """A forecast whose valid frame is missing waits verify.grace_minutes (a late frame then
    counts); the baselines run on the inputs the forecast read, not on ones replaced later."""
    grid = Grid.from_extent("EPSG:3035", (3.9e6, 3.0e6, 3.9e6 + 64e3, 3.0e6 + 64e3), 2000.0)
    frames = list(truth_frames("g", grid, T0, 150, seed=5))
    by_time = {f.time: f for f in frames}
    late = T0 + pd.Timedelta(minutes=60)  # a valid time of the 00:25 forecast
    archive = Archive(tmp_path / "archive", create=True)
    archive.write(
        [f for f in frames if f.time != late and f.time <= T0 + pd.Timedelta(minutes=90)], "a"
    )
    cfg = load_config(
        None,
        [
            f"stores.archive.location={tmp_path / 'archive'}",
            f"stores.forecasts.location={tmp_path / 'forecasts'}",
            f"stores.scores.location={tmp_path / 'scores'}",
            "verify.grace_minutes=30",
            "verify.fss_scales=[1]",
        ],
    )
    forecasts = ForecastStore(tmp_path / "forecasts", create=True)
    issue(
        archive,
        forecasts,
        get_method("extrapolation"),
        "g",
        6,
        60,
        T0 + pd.Timedelta(minutes=25),
    )
    # an input frame replaced after the forecast was issued: not what the forecast saw
    changed = by_time[T0 + pd.Timedelta(minutes=25)]
    replaced = dataclasses.replace(changed, precip=changed.precip * 0 + 9.0)
    archive.write(
        [replaced],
        "a better 00:25",
    )
    assert verify(cfg)[0].scored == 0  # 01:00 missing; newest 01:30 < 01:25 + 30 min
    archive.write([by_time[late]], "the late frame")
    archive.write([f for f in frames if f.time > T0 + pd.Timedelta(minutes=90)], "the rest")
    done = verify(cfg)[0]
    assert (done.scored, done.waiting) == (1, 0)
    s = {
        m: sc.summary()
        for m, sc in ScoresStore(cfg.stores.scores.location).pool("g").scores.items()
    }
    # the issued forecast is extrapolation of the inputs it read: so is the baseline
    assert s[ISSUED]["per_lead"]["mae"] == s["extrapolation"]["per_lead"]["mae"]
    assert s[ISSUED]["per_lead"]["mae"][6] is not None  # the late 01:00 frame was scored


def test_a_domain_that_cannot_be_verified_does_not_stop_the_others(issued):
    cfg, _ = issued
    forecasts = ForecastStore(cfg.stores.forecasts.location)
    other = forecasts.forecast("v")
    forecasts.write(dataclasses.replace(other, domain="gone"))  # not in the archive
    outcomes = {o.domain: o for o in verify(cfg)}
    assert outcomes["v"].scored == 7
    assert outcomes["gone"].scored == 0 and "no domain 'gone'" in outcomes["gone"].error
