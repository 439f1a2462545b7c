"""Polar volumes of every supported format, real samples: decoding, geolocation and values."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyproj
import pytest
import xradar

from pipelines.config import MotioncastConfig, load_config
from pipelines.ingest import decode_file, ingest
from pipelines.radar.beam import gate_positions
from pipelines.radar.zr import dbz_to_rainrate
from pipelines.store import Archive, open_archive
from tests.conftest import radar_sample

CFG = MotioncastConfig()
pytestmark = pytest.mark.realdata


@pytest.mark.parametrize(
    "relative, domain, elevation",
    [
        ("sweeps/nexrad/KLBB20160601_150025_V06", "klbb", "0.483 deg"),
        ("sweeps/nexrad/KLIX20050828_180149.gz", "klix", "0.483 deg"),
        ("sweeps/odim/T_PAGZ35_C_ENMI_20170421090837.hdf", "norst", "0.5 deg"),
        ("sweeps/odim/T_PAZA63_C_LFPW_20230420065041.h5", "frave", "8 deg"),
        (
            "sweeps/cfradial/Z__C_RJTD_20230801200000_RDR_JMAGPV_RS47937_Gar0p250km0p70deg"
            "_PRref_N18_ANAL_cfrad.nc",
            "site_47937",
            "1.2 deg",
        ),
    ],
)
def test_every_reader_gives_a_frame_on_its_site_domain(relative: str, domain: str, elevation: str):
    path = radar_sample(relative)
    frame = decode_file(path, CFG)
    assert frame.domain == domain and frame.grid.shape == (400, 400)
    assert frame.scan_times.startswith(elevation)
    scanned = pd.Timestamp(frame.scan_times.split(" ")[2].split("/")[0])
    assert abs(scanned - frame.time) <= pd.Timedelta(minutes=5)
    assert frame.time.minute % 5 == 0 and frame.time.second == 0
    finite = frame.precip[np.isfinite(frame.precip)]
    assert finite.size > 0.3 * frame.precip.size and finite.min() >= 0


def test_behel_volumes_become_eight_frames_five_minutes_apart(tmp_path: Path):
    folder = radar_sample("sweeps/behel")
    result = ingest([folder], load_config(stores={"archive": {"location": tmp_path / "a"}}))
    assert result.ok and result.added == {"behel": 8}
    ds = open_archive(tmp_path / "a", "behel")
    assert list(ds.time.values) == list(pd.date_range("2020-02-07T13:00", periods=8, freq="5min"))
    # behel scans top down: its 0.3 deg sweep runs at 13:04 in the 13:00 volume
    assert ds.scan_times.values[0].startswith("0.3 deg 2020-02-07T13:04:08")


def test_site_cell_and_gate_positions_against_pyproj():
    path = sorted(radar_sample("sweeps/behel").glob("*.hdf"))[0]
    frame = decode_file(path, CFG)
    lat, lon = 51.069072, 5.4064
    x, y = frame.grid.xy_of(lon, lat)
    assert frame.grid.cell_of(x, y) == (200, 200)
    # a gate 120 km out at azimuth 30 deg, 0.3 deg elevation: ground distance by 4/3 Earth,
    # position by geodesic forward computation
    grid = frame.grid
    gx, gy, h = gate_positions(
        lat, lon, 140.0, np.array([30.0]), np.array([120_000.0]), 0.3, grid.crs
    )
    ka = 4 / 3 * 6_371_000.0
    hh = np.sqrt(120_000.0**2 + ka**2 + 2 * 120_000.0 * ka * np.sin(np.radians(0.3))) - ka
    ground = ka * np.arcsin(120_000.0 * np.cos(np.radians(0.3)) / (ka + hh))
    lon2, lat2, _ = pyproj.Geod(ellps="WGS84").fwd(lon, lat, 30.0, ground)
    ex, ey = grid.xy_of(lon2, lat2)
    assert gx[0, 0] == pytest.approx(ex, abs=1.0) and gy[0, 0] == pytest.approx(ey, abs=1.0)
    assert h[0, 0] == pytest.approx(hh + 140.0, abs=0.5)


def test_behel_cells_equal_the_nearest_gate_by_direct_search():
    path = sorted(radar_sample("sweeps/behel").glob("*.hdf"))[3]
    frame = decode_file(path, CFG)
    sweep = xradar.io.open_odim_datatree(str(path))["sweep_0"].to_dataset()  # 0.3 deg
    dbz = sweep.DBZH.values
    az, rng = sweep.azimuth.values.astype(float), sweep.range.values.astype(float)
    lat, lon = 51.069072, 5.4064
    gx, gy, _ = gate_positions(lat, lon, 140.0, az, rng, 0.3, frame.grid.crs)
    wet = np.argwhere(frame.precip > 1.0)
    rng_ = np.random.default_rng(0)
    cells = [tuple(c) for c in wet[rng_.choice(len(wet), 5, replace=False)]] + [(150, 260)]
    for row, col in cells:
        d2 = (gx - frame.grid.x[col]) ** 2 + (gy - frame.grid.y[row]) ** 2
        i, j = np.unravel_index(np.argmin(d2), d2.shape)
        raw = dbz[i, j]
        expected = 0.0 if raw == -32.0 else dbz_to_rainrate(np.array([raw]), CFG.zr)[0]
        assert frame.precip[row, col] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def _without_dbzh(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        for name in f:
            if name.startswith("dataset"):
                f[name]["data1"]["what"].attrs["quantity"] = np.bytes_("TH")
    return dst


def _no_rays(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        for name in [n for n in f if n.startswith("dataset")]:
            del f[name]["data1"]["data"]
            f[name]["data1"].create_dataset("data", data=np.zeros((0, 800), np.uint8))
            f[name]["where"].attrs["nrays"] = 0
    return dst


def test_bad_volumes_are_quarantined_and_the_store_untouched(tmp_path: Path):
    good = sorted(radar_sample("sweeps/behel").glob("*.hdf"))
    store = tmp_path / "store"
    cfg = load_config(stores={"archive": {"location": store}})
    assert ingest(good[:2], cfg).ok
    before = Archive(store).history()[0][0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "truncated.hdf").write_bytes(good[2].read_bytes()[:20_000])
    _without_dbzh(good[2], bad / "no_dbzh.hdf")
    _no_rays(good[2], bad / "no_rays.hdf")
    result = ingest([bad], cfg)
    assert len(result.failed) == 3 and sum(result.added.values()) == 0
    reasons = " | ".join(result.failed)
    assert "truncated.hdf: unreadable HDF5" in reasons
    assert "no_dbzh.hdf: no sweep with DBZH" in reasons
    assert "no_rays.hdf: sweep dataset1 has no rays" in reasons and "Traceback" not in reasons
    assert Archive(store).history()[0][0] == before  # not even a commit
    mixed = ingest([bad / "no_dbzh.hdf", good[2]], cfg)
    assert mixed.added == {"behel": 1} and len(mixed.failed) == 1
