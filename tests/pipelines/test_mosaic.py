"""Several radars in one configured domain: one mosaic frame per slot."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.grid import Grid
from pipelines.ingest import decode_file, ingest
from pipelines.store import Archive, open_archive
from pipelines.store.mosaic import merge

AEQD = "+proj=aeqd +lat_0=52.07 +lon_0=5.45 +ellps=WGS84 +units=m"
SIMNET = {
    "crs": AEQD,
    "extent": [-320e3, -220e3, 320e3, 220e3],
    "resolution": 2000,
    "radars": ["sim01", "sim02"],
}


def config(store: Path, method: str = "max", **ingest_settings):
    return load_config(
        stores={"archive": {"location": store}},
        domains={"simnet": SIMNET},
        ingest={"mosaic": {"method": method}, **ingest_settings},
    )


def test_two_radars_make_one_frame_per_slot(sim_volumes: list[Path], tmp_path: Path):
    result = ingest(sim_volumes, config(tmp_path / "a"))
    assert result.ok and result.added == {"simnet": 7} and result.staged == {"simnet": 14}
    ds = open_archive(tmp_path / "a")
    assert list(ds.radars.values) == ["sim01,sim02"] * 7
    assert all(u == "" for u in ds.updates.values)
    assert ds.source_format.values[0] == "mosaic"
    one = {
        name: decode_file(p, config(tmp_path / "a"))
        for name, p in (("sim01", sim_volumes[0]), ("sim02", sim_volumes[1]))
    }
    mosaic = ds.precip.isel(time=0).values
    seen = np.isfinite(one["sim01"].precip) | np.isfinite(one["sim02"].precip)
    np.testing.assert_array_equal(np.isfinite(mosaic), seen)  # NaN only where no radar sees
    both = np.isfinite(one["sim01"].precip) & np.isfinite(one["sim02"].precip)
    assert both.sum() > 1000  # the radars overlap
    np.testing.assert_allclose(
        mosaic[both], np.maximum(one["sim01"].precip, one["sim02"].precip)[both]
    )


def test_a_slot_waits_for_its_radars_until_the_deadline(sim_volumes: list[Path], tmp_path: Path):
    store = tmp_path / "a"
    cfg = config(store)
    archive = Archive(store, create=True)
    from pipelines.ingest.run import mosaic_specs

    first = decode_file(sim_volumes[0], cfg)  # sim01 12:00
    slot = first.time
    report = archive.write([first], "sim01", mosaic_specs(cfg), now=slot + pd.Timedelta(minutes=3))
    assert report.pending["simnet"] == [slot] and archive.domains() == []
    late = slot + pd.Timedelta(minutes=11)  # past the 10-minute deadline: written without sim02
    report = archive.write([], "flush", mosaic_specs(cfg), now=late)
    assert report.added["simnet"] == [slot]
    assert open_archive(store).radars.values.tolist() == ["sim01"]
    second = decode_file(sim_volumes[1], cfg)  # sim02 12:00 arrives later still
    report = archive.write([second], "sim02", mosaic_specs(cfg), now=late)
    assert report.replaced["simnet"] == [slot]
    ds = open_archive(store)
    assert ds.radars.values.tolist() == ["sim01,sim02"]
    assert ds.updates.values.tolist() == ["sim02 arrived late"]
    again = archive.write([second], "again", mosaic_specs(cfg), now=late)
    assert again.n_written == 0 and again.snapshot is None


def smooth_field(grid: Grid) -> np.ndarray:
    xx, yy = np.meshgrid(grid.x, grid.y)
    return (5 + 3 * np.sin(xx / 90e3) * np.cos(yy / 70e3)).astype(np.float32)


@pytest.mark.parametrize("method", ["max", "distance_weighted"])
def test_overlap_of_a_smooth_field_is_seamless(method: str):
    grid = Grid.from_extent(AEQD, (-320e3, -220e3, 320e3, 220e3), 2000.0)
    truth = smooth_field(grid)
    xx, yy = np.meshgrid(grid.x, grid.y)
    sites = [(4.60, 52.00), (6.30, 52.15)]
    fields = []
    for lon, lat in sites:
        sx, sy = grid.xy_of(lon, lat)
        covered = np.hypot(xx - sx, yy - sy) <= 200e3
        fields.append(np.where(covered, truth, np.nan))
    mosaic = merge(fields, sites, grid, method)
    both = np.isfinite(fields[0]) & np.isfinite(fields[1])
    np.testing.assert_allclose(mosaic[both], truth[both], rtol=1e-5)  # no seam, no bias
    step = np.nanmax(np.abs(np.diff(mosaic, axis=1)))
    assert step <= np.nanmax(np.abs(np.diff(truth, axis=1))) + 1e-5


def test_distance_weighting_blends_disagreeing_radars_smoothly():
    grid = Grid.from_extent(AEQD, (-320e3, -220e3, 320e3, 220e3), 2000.0)
    truth = smooth_field(grid)
    sites = [(4.60, 52.00), (6.30, 52.15)]
    biased = [truth * 1.2, truth * 0.8]  # two radars calibrated 20 % apart, full coverage
    blended = merge(biased, sites, grid, "distance_weighted")
    maxed = merge(biased, sites, grid, "max")
    roughness = lambda f: np.abs(np.diff(f / truth, axis=1)).max()  # noqa: E731
    assert roughness(blended) < 0.02  # the ratio to the truth changes gradually
    assert np.allclose(maxed, truth * 1.2)  # max: everywhere the hotter radar
    row = grid.cell_of(*grid.xy_of(5.45, 52.07))[0]
    near_1 = grid.cell_of(*grid.xy_of(4.60, 52.00))[1]
    near_2 = grid.cell_of(*grid.xy_of(6.30, 52.15))[1]
    r = blended[row] / truth[row]
    assert r[near_1] > 1.15 and r[near_2] < 0.85  # each radar rules near itself
