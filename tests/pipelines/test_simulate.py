"""The synthetic radar network: real ODIM_H5 files, a realistic storm, deterministic by seed."""

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xradar

from pipelines.config import MotioncastConfig
from pipelines.simulate import simulate_network
from pipelines.simulate.motion import MotionField
from pipelines.simulate.network import truth_grid
from pipelines.simulate.weather import StormField

CFG = MotioncastConfig()


def test_one_volume_per_radar_every_five_minutes(sim_volumes: list[Path]):
    names = sorted(p.name for p in sim_volumes)
    assert len(names) == 14
    assert names[0] == "20260601T1200Z_sim01.pvol.h5"
    assert names[-1] == "20260601T1230Z_sim02.pvol.h5"


def test_odim_structure_and_encodings(sim_volumes: list[Path]):
    encodings = {}
    for path in sim_volumes[:2]:
        with h5py.File(path) as f:
            assert f.attrs["Conventions"] == b"ODIM_H5/V2_2"
            assert f["what"].attrs["object"] == b"PVOL"
            assert f["what"].attrs["source"].decode().startswith("NOD:sim0")
            assert {"lat", "lon", "height"} <= set(f["where"].attrs)
            n_sweeps = len([k for k in f if k.startswith("dataset")])
            assert n_sweeps == len(CFG.simulate.elevations_deg)
            d = f["dataset1/data1"]
            what = dict(d["what"].attrs)
            assert what["quantity"] == b"DBZH"
            assert {"gain", "offset", "nodata", "undetect"} <= set(what)
            encodings[f["what"].attrs["source"].decode()[4:9]] = (d["data"].dtype, what["gain"])
            assert f["dataset1/where"].attrs["nrays"] == 360
            assert f["dataset1/what"].attrs["startdate"] == b"20260601"
    assert encodings == {"sim01": (np.uint8, 0.5), "sim02": (np.uint16, 0.01)}


def test_xradar_reads_volumes_with_nodata_and_undetect(sim_volumes: list[Path]):
    tree = xradar.io.open_odim_datatree(str(sim_volumes[0]))  # sim01, blocked 40-48 deg
    assert list(tree.ds["sweep_fixed_angle"].values) == CFG.simulate.elevations_deg
    low = tree["sweep_0"].to_dataset()
    assert low.DBZH.shape == (360, 400)
    assert float(tree.ds.latitude) == pytest.approx(52.0)
    blocked = low.DBZH.sel(azimuth=slice(40, 48)).values
    assert np.isnan(blocked).all()  # the blocked sector is nodata
    open_sky = low.DBZH.sel(azimuth=slice(100, 300)).values
    assert not np.isnan(open_sky).any()
    assert (open_sky == -32.0).mean() > 0.3  # undetect (no echo) decodes to the offset
    assert np.nanmax(open_sky) > 30  # and there is weather


def test_same_seed_same_files_other_seed_other_weather(tmp_path: Path):
    start = pd.Timestamp("2026-06-01T12:00")
    a = simulate_network(tmp_path / "a", start, 5, 1, 7, CFG.simulate, CFG.zr)
    b = simulate_network(tmp_path / "b", start, 5, 1, 7, CFG.simulate, CFG.zr)
    c = simulate_network(tmp_path / "c", start, 5, 1, 8, CFG.simulate, CFG.zr)
    assert a[-1].read_bytes() == b[-1].read_bytes()
    with h5py.File(a[-1]) as fa, h5py.File(c[-1]) as fc:
        assert not np.array_equal(fa["dataset1/data1/data"][:], fc["dataset1/data1/data"][:])


@pytest.fixture(scope="module")
def two_hours() -> list[np.ndarray]:
    grid = truth_grid(CFG.simulate.radars[:2], CFG.simulate)
    storm = StormField(grid, CFG.simulate, np.random.default_rng(0))
    fields = []
    for k in range(25):
        if k:
            storm.step(300.0)
        fields.append(storm.rain_rate())
    return fields


def test_rain_statistics_are_radar_like(two_hours: list[np.ndarray]):
    wet = np.array([(f > 0).mean() for f in two_hours])
    assert wet.min() >= 0.05 and wet.max() <= 0.40  # intermittent: 5-40 % of the area wet
    assert wet.max() - wet.min() > 0.05  # and the wet share changes
    rates = np.concatenate([f[f > 0] for f in two_hours])
    assert 0.15 <= np.median(rates) <= 1.5  # mostly light rain...
    assert np.quantile(rates, 0.99) > 5  # ...with a heavy tail...
    assert max(f.max() for f in two_hours) > 40  # ...and convective cores
    log_rates = np.log(rates)
    skew = ((log_rates - log_rates.mean()) ** 3).mean() / log_rates.std() ** 3
    assert abs(skew) < 1.5  # log-rates roughly symmetric: lognormal-like


def test_rain_moves_grows_and_decays(two_hours: list[np.ndarray]):
    a, b, c = two_hours[0] > 0, two_hours[1] > 0, two_hours[24] > 0
    overlap_5min = (a & b).sum() / a.sum()
    overlap_2h = (a & c).sum() / a.sum()
    assert overlap_5min > 0.8  # coherent from one volume to the next
    assert overlap_2h < 0.6  # but the field has moved and changed after 2 hours


def test_motion_varies_in_space_and_time():
    rng = np.random.default_rng(0)
    m = MotionField.draw(CFG.simulate, rng, (-300e3, -300e3, 300e3, 300e3))
    xs = np.array([-200e3, 0.0, 200e3])
    ys = np.zeros(3)
    u0, v0 = m.velocity(xs, ys, 0.0)
    u2, v2 = m.velocity(xs, ys, 7200.0)
    assert np.ptp(np.hypot(u0, v0)) > 1.0 or np.ptp(np.arctan2(v0, u0)) > 0.1  # space
    assert np.max(np.hypot(u2 - u0, v2 - v0)) > 0.5  # time


def test_network_config_defines_the_mosaic_domain(sim_volumes: list[Path]):
    from pipelines.config import load_config

    cfg = load_config(sim_volumes[0].parent / "network.yaml")
    simnet = cfg.domains["simnet"]
    assert simnet.radars == ["sim01", "sim02"] and simnet.resolution == 1000.0
    grid = simnet.grid()
    for site in CFG.simulate.radars[:2]:
        assert grid.contains_lonlat(site.lon, site.lat)
