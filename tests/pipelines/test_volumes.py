"""Polar volumes (the simulator's ODIM PVOLs) onto site-centred grids."""

from pathlib import Path

import numpy as np
import pyproj
import pytest
import xradar

from pipelines.config import MotioncastConfig
from pipelines.radar.gridding import grid_index
from pipelines.radar.readers import get_method
from pipelines.radar.zr import dbz_to_rainrate

CFG = MotioncastConfig()


@pytest.fixture(scope="module")
def sim01(sim_volumes: list[Path]):
    path = sim_volumes[0]
    decoded = get_method("odim_pvol")(path, CFG)
    return path, decoded, decoded.to_grid(decoded.grid)


def test_site_domain_named_after_node_and_centred(sim01):
    _, d, rate = sim01
    assert d.source == "sim01" and str(d.time) == "2026-06-01 12:00:00"
    assert d.grid.shape == (400, 400) and d.grid.dx == 1000.0
    assert d.grid.cell_of(0.0, 0.0) == (200, 200)  # the site is the grid's centre
    assert d.centre_lonlat == pytest.approx((4.60, 52.00))


def test_unknown_beyond_range_and_in_blocked_sector_dry_where_no_echo(sim01):
    _, d, rate = sim01
    xx, yy = np.meshgrid(d.grid.x, d.grid.y)
    dist = np.hypot(xx, yy)
    assert np.isnan(rate[dist > 201_000]).all()
    inside = dist < 195_000
    bearing = np.degrees(np.arctan2(xx, yy)) % 360
    blocked = inside & (bearing > 41) & (bearing < 47) & (dist > 5_000)
    assert np.isnan(rate[blocked]).all()
    seen = inside & ~((bearing > 39) & (bearing < 49))
    assert not np.isnan(rate[seen]).any()
    assert (rate[seen] == 0).mean() > 0.3  # undetect is dry, not unknown
    assert rate[seen].max() > 10


def test_cell_value_is_the_nearest_gate_converted_by_zr(sim01):
    path, d, rate = sim01
    sweep = xradar.io.open_odim_datatree(str(path))["sweep_0"].to_dataset()
    dbz = sweep.DBZH.values
    az, rng = sweep.azimuth.values, sweep.range.values
    ka = 4 / 3 * 6_371_000.0
    for row, col in [(150, 260), (300, 120), (210, 330)]:
        x, y = d.grid.x[col], d.grid.y[row]
        ground = np.hypot(x, y)
        bearing = np.degrees(np.arctan2(x, y)) % 360
        i = int(np.argmin(np.abs((az - bearing + 180) % 360 - 180)))
        # slant range of the beam at this ground distance, 0.5 deg elevation
        theta = np.radians(0.5)
        slant = np.sin(ground / ka) * (ka + 50) / np.cos(theta + ground / ka)
        j = int(np.argmin(np.abs(rng - slant)))
        expected = dbz_to_rainrate(np.array([dbz[i, j]]), CFG.zr)[0]
        if dbz[i, j] == -32.0:
            expected = 0.0
        assert rate[row, col] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_index_is_cached_per_geometry(sim_volumes: list[Path]):
    grid_index.cache_clear()
    reader = get_method("odim_pvol")
    for path in sim_volumes[:4:2]:  # two sim01 volumes: same geometry
        d = reader(path, CFG)
        d.to_grid(d.grid)
    info = grid_index.cache_info()
    assert info.misses == 1 and info.hits == 1


def test_volume_onto_a_configured_domain(sim_volumes: list[Path]):
    aeqd = "+proj=aeqd +lat_0=52.0 +lon_0=4.6 +ellps=WGS84 +units=m"
    cfg = MotioncastConfig.model_validate(
        {
            "domains": {
                "west": {"crs": aeqd, "extent": [-50e3, -50e3, 50e3, 50e3], "resolution": 2000}
            }
        }
    )
    d = get_method("odim_pvol")(sim_volumes[0], cfg)
    grid = cfg.domains["west"].grid()
    assert grid.contains_lonlat(*d.centre_lonlat)
    rate = d.to_grid(grid)
    assert rate.shape == (50, 50) and not np.isnan(rate[25:35, 15:25]).any()  # (SW: unblocked)
    assert pyproj.CRS(aeqd).equals(grid.crs)
