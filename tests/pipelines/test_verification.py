"""Verification: issued forecasts scored against the archive beside the baselines, stored as
pysteps' sums, pooled over any period."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pysteps.verification.detcatscores import det_cat_fct

from pipelines.forecast.issue import issue
from pipelines.forecast.methods import get_forecaster
from pipelines.forecast.store import ForecastStore
from pipelines.store import Archive
from pipelines.verification.store import ISSUED, ScoresStore, ScoresStoreError
from pipelines.verification.verify import score_spec, verify
from tests.conftest import motioncast

T0 = pd.Timestamp("2026-06-01T00:00")


def test_due_forecasts_are_scored_once_beside_the_baselines_on_the_same_cells(issued):
    cfg, frames = issued
    (done,) = verify(cfg)
    # issued 00:25 .. 02:25; observed to 03:00: those issued by 02:00 are complete
    assert (done.domain, done.scored, done.waiting) == ("v", 7, 2) and done.snapshot
    scores = ScoresStore(cfg.verify.store)
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
    forecasts = ForecastStore(cfg.forecast.store)
    by_time = {f.time: f.precip for f in frames}
    pooled = ScoresStore(cfg.verify.store).pool("v", until=pd.Timestamp("2026-06-01T00:40"))
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
    store = ScoresStore(cfg.verify.store)
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
    commits = len(ScoresStore(cfg.verify.store).history())
    other = cfg.model_copy(
        update={"verify": cfg.verify.model_copy(update={"thresholds_mm_h": [2.0]})}
    )
    # more forecasts, due now, of a layout the store does not hold
    archive = Archive(cfg.store.archive)
    forecasts = ForecastStore(cfg.forecast.store)
    issue(archive, forecasts, get_forecaster("persistence"), "v", 6, 60, T0 + pd.Timedelta(hours=1))
    with pytest.raises(ScoresStoreError, match="another layout"):
        verify(other)
    assert len(ScoresStore(cfg.verify.store).history()) == commits
    assert score_spec(cfg.verify, 12).thresholds == (0.1, 1.0, 5.0, 10.0)


def test_cli_scores_pools_and_reports_with_plots_and_bad_input_is_one_line(issued, tmp_path):
    cfg, _ = issued
    stores = [
        "--store",
        cfg.store.archive,
        "--forecasts",
        cfg.forecast.store,
        "--scores",
        cfg.verify.store,
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
    stores = ["--store", cfg.store.archive, "--forecasts", cfg.forecast.store]
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
