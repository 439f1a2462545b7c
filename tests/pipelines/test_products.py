"""Products and gridding of polar volumes, on volumes whose content the test sets."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.grid import Grid
from pipelines.radar.beam import beam_height_and_ground_range
from pipelines.radar.errors import BadInputError
from pipelines.radar.gridding import grid_sweep
from pipelines.radar.products import polar_product
from pipelines.radar.volumes import PolarSweep, PolarVolume, read_volume


@pytest.fixture(scope="module")
def volume(sim_volumes: list[Path]) -> PolarVolume:
    return read_volume(sim_volumes[0], "odim_pvol")  # sim01: 6 elevations, 400 gates of 500 m


def test_idw_of_a_constant_is_the_constant_and_nearest_keeps_gates(volume: PolarVolume):
    sweep = volume.sweeps[0]
    grid = Grid.centred_on(volume.lat, volume.lon, 400e3, 1000.0)
    ones = np.full(sweep.dbz().shape, 3.0, dtype=np.float32)
    for method in ("nearest", "idw"):
        out = grid_sweep(ones, sweep.geometry, grid, 200e3, method)
        assert np.nanmin(out) == pytest.approx(3.0) and np.nanmax(out) == pytest.approx(3.0)
    ramp = np.broadcast_to(np.arange(ones.shape[1], dtype=np.float32), ones.shape)
    near = grid_sweep(ramp, sweep.geometry, grid, 200e3, "nearest")
    idw = grid_sweep(ramp, sweep.geometry, grid, 200e3, "idw")
    finite = np.isfinite(near)
    assert np.array_equal(near[finite], np.round(near[finite]))  # a gate's own value
    assert not np.array_equal(idw[finite], np.round(idw[finite]))  # a weighted mean
    assert np.nanmax(np.abs(idw - near)) < 2.0  # of neighbouring gates


def test_cappi_takes_the_sweep_closest_to_the_height(volume: PolarVolume):
    cfg = load_config(overrides=["ingest.polar.product=cappi", "ingest.polar.cappi_height_m=2000"])
    # each sweep's reflectivity encodes its index: the product then says which sweep was taken
    marked = [
        PolarSweep(
            s.geometry, s.data.assign(DBZH=s.data.DBZH * 0 + 20.0 + 5.0 * i), False, s.start, s.end
        )
        for i, s in enumerate(volume.sweeps)
    ]
    decoded = polar_product(
        PolarVolume(volume.node, volume.nominal, volume.lat, volume.lon, volume.altitude_m, marked),
        cfg,
        "odim_pvol",
        Path("x"),
    )
    rate = decoded.to_grid(decoded.grid)
    zr = cfg.zr
    taken = np.round((10 * np.log10(zr.a * rate**zr.b) - 20.0) / 5.0)  # back to the index
    for distance in (20e3, 60e3, 150e3):
        row, col = decoded.grid.cell_of(distance, 0.0)
        heights = []
        for s in volume.sweeps:  # beam height where the beam is `distance` out along the ground
            h, ground = beam_height_and_ground_range(
                s.geometry.range_m, s.geometry.elevation_deg, 50.0
            )
            heights.append(np.interp(distance, ground, h))
        expected = int(np.argmin(np.abs(np.array(heights) - 2000.0)))
        assert taken[row, col] == expected, distance
    assert decoded.product.startswith("CAPPI 2000 m")
    assert len(decoded.scan_times.split("; ")) == len(volume.sweeps)


def test_volume_between_slots_is_refused(volume: PolarVolume):
    cfg = load_config(overrides=["ingest.polar.slot_tolerance_minutes=1"])
    odd = PolarVolume(
        volume.node,
        volume.nominal + pd.Timedelta(minutes=2),
        volume.lat,
        volume.lon,
        volume.altitude_m,
        volume.sweeps,
    )
    with pytest.raises(BadInputError, match="more than 1 min from the slot 12:00"):
        polar_product(odd, cfg, "odim_pvol", Path("odd.h5"))
    ok = polar_product(odd, load_config(), "odim_pvol", Path("odd.h5"))
    assert ok.time == volume.nominal
