"""Regions: a domain that cuts one source's native grid to a box keeps exactly that part of
each frame, cell for cell (the same cut of the full frame), in the source's CRS or in lon/lat."""

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pipelines.config import DomainConfig, load_config
from pipelines.grid import Grid
from pipelines.ingest import ingest
from pipelines.radar.resample import resample_nearest
from pipelines.store import Archive
from tests.conftest import motioncast, radar_sample

GRID = Grid.from_extent("EPSG:3035", (0.0, 0.0, 100e3, 50e3), 1000.0)  # 100 x 50 cells


def test_a_box_on_cell_edges_takes_exactly_those_cells_and_a_cut_is_a_slice():
    cut = GRID.window((10e3, 20e3, 30e3, 45e3))
    assert cut.shape == (25, 20) and (cut.x0, cut.y0) == (10e3, 45e3)
    assert cut.offset_in(GRID) == (5, 10)  # rows from the north edge, columns from the west
    inside = GRID.window((10.5e3, 20.5e3, 29.5e3, 44.5e3))  # a box within cells takes them whole
    assert inside == cut
    values = np.arange(GRID.nx * GRID.ny, dtype=np.float32).reshape(GRID.shape)
    np.testing.assert_array_equal(resample_nearest(values, GRID, cut), values[5:30, 10:30])
    assert resample_nearest(values, GRID, GRID) is values  # its own grid: no view, no copy
    clipped = GRID.window((-50e3, -50e3, 5e3, 5e3))  # a box over the edge keeps what is there
    assert clipped.shape == (5, 5) and clipped.offset_in(GRID) == (45, 0)
    with pytest.raises(ValueError, match="lies outside the grid"):
        GRID.window((200e3, 0.0, 300e3, 10e3))
    assert GRID.offset_in(cut) is None  # the outer grid is not a window of its cut


def test_a_lonlat_box_is_covered_whole_on_a_projected_grid():
    lonlat = (5.0, 47.0, 6.0, 48.0)
    europe = Grid.from_extent("EPSG:3035", (3.8e6, 2.5e6, 4.6e6, 3.2e6), 2000.0)
    cut = europe.window(lonlat, "EPSG:4326")
    xx, yy = np.meshgrid(np.linspace(5.0, 6.0, 21), np.linspace(47.0, 48.0, 21))
    x, y = cut.xy_of(xx.ravel(), yy.ravel())
    xmin, ymin, xmax, ymax = cut.extent
    assert (x >= xmin).all() and (x <= xmax).all() and (y >= ymin).all() and (y <= ymax).all()
    assert cut.offset_in(europe) is not None and cut.dx == 2000.0


def test_a_domain_is_its_own_grid_or_a_cut_never_a_mix():
    DomainConfig(source="opera", bbox=(0, 0, 1, 1))
    DomainConfig(crs="EPSG:3035", extent=(0, 0, 1000, 1000), resolution=100)
    for bad in (
        {"source": "opera"},
        {"source": "opera", "bbox": (0, 0, 1, 1), "crs": "EPSG:3035"},
        {"crs": "EPSG:3035", "extent": (0, 0, 1000, 1000)},
    ):
        with pytest.raises(ValidationError, match="either its own grid"):
            DomainConfig(**bad)
    # a box or CRS that would quarantine every file is refused when the configuration loads
    with pytest.raises(ValidationError, match="is not xmin, ymin, xmax, ymax"):
        DomainConfig(source="opera", bbox=(10, 50, 5, 45))
    with pytest.raises(ValidationError, match="bbox_crs 'EPSG:43260'"):
        DomainConfig(source="opera", bbox=(5, 45, 10, 50), bbox_crs="EPSG:43260")
    with pytest.raises(ValidationError, match="bbox_crs belongs to a cut"):
        DomainConfig(crs="EPSG:3035", extent=(0, 0, 1, 1), resolution=1, bbox_crs="EPSG:4326")


def _ingest(files: list[Path], archive: Path, **domains) -> Archive:
    cfg = load_config(domains=domains, stores={"archive": {"location": archive}})
    result = ingest(files, cfg)
    assert result.ok, result.failed
    return Archive(archive)


def _same_cut(cut, full) -> None:
    """Every frame of ``cut`` equals the same cells of ``full``, unknown cells in place."""
    assert cut.sizes["time"] == full.sizes["time"] and cut.present.values.all()
    dx = abs(float(full.x[1] - full.x[0]))  # the cut's cell centres are the full grid's
    part = full.sel(x=cut.x.values, y=cut.y.values, method="nearest", tolerance=dx * 1e-6)
    np.testing.assert_array_equal(cut.precip.values, part.precip.values)
    assert cut.crs.attrs["crs_wkt"] == full.crs.attrs["crs_wkt"]
    assert cut.attrs["time_step_minutes"] == full.attrs["time_step_minutes"]
    assert np.isnan(cut.precip.values).any() and np.nanmax(cut.precip.values) > 1


@pytest.mark.realdata
def test_an_opera_region_cut_in_lonlat_equals_the_same_cut_of_the_full_frame(tmp_path: Path):
    files = sorted(radar_sample("composites/opera/20180824").glob("*.hdf"))[8:11]
    full = _ingest(files, tmp_path / "full").dataset("opera")
    assert full.precip.encoding["chunks"] == (1, 734, 950)  # 2200 x 1900 in even chunks <= 1024
    alps = {"source": "opera", "bbox": (5.0, 44.0, 17.0, 49.0), "bbox_crs": "EPSG:4326"}
    cut = _ingest(files, tmp_path / "cut", alps=alps).dataset("alps")
    assert cut.sizes["y"] * cut.sizes["x"] < full.sizes["y"] * full.sizes["x"] / 8
    assert int(cut.attrs["time_step_minutes"]) == 15  # the source's own step
    _same_cut(cut, full)


@pytest.mark.realdata
def test_an_mrms_region_cut_in_its_own_coordinates_equals_the_same_cut(tmp_path: Path):
    files = sorted(radar_sample("composites/mrms/2019/06/10").glob("*.grib2"))[:2]
    full = _ingest(files, tmp_path / "full").dataset("mrms")
    gulf = {"source": "mrms", "bbox": (-92.0, 25.0, -86.0, 30.0)}  # degrees: MRMS's CRS
    cut = _ingest(files, tmp_path / "cut", gulf=gulf).dataset("gulf")
    assert (cut.sizes["y"], cut.sizes["x"]) == (500, 600)  # 0.01-degree cells
    info = motioncast("archive", "info", "--store", str(tmp_path / "cut"))
    assert "500 x 600 @ 0.01 deg" in info.stdout  # not "0.01 m"
    (summary,) = Archive(tmp_path / "cut").summary()
    assert summary.as_dict()["units"] == "deg"
    assert summary.as_dict()["resolution"] == pytest.approx([0.01, 0.01])
    assert int(cut.attrs["time_step_minutes"]) == 2
    _same_cut(cut, full)  # rain on the coast, unknown beyond the radars' reach at sea


@pytest.mark.realdata
def test_a_file_of_another_source_or_outside_the_box_is_one_line(tmp_path: Path):
    knmi = sorted(radar_sample("composites/KNMI/2010/08").glob("*.h5"))[40]
    far = {"source": "knmi", "bbox": (-120.0, 30.0, -110.0, 40.0), "bbox_crs": "EPSG:4326"}
    cfg = load_config(
        domains={"alps": {"source": "opera", "bbox": (5.0, 44.0, 17.0, 49.0)}, "far": far},
        stores={"archive": {"location": tmp_path / "a"}},
    )
    wrong = ingest([knmi], cfg, domain="alps")
    assert wrong.failed == [f"{knmi}: domain 'alps' is a cut of 'opera'; this file is from 'knmi'"]
    outside = ingest([knmi], cfg)  # 'far' cuts KNMI, but its box misses KNMI's grid
    (line,) = outside.failed
    assert line.startswith(f"{knmi}: domain 'far': box (-120.0, 30.0, -110.0, 40.0)")
    assert "lies outside the grid" in line and "\n" not in line
    assert (tmp_path / "a.quarantine" / knmi.name).exists()


_PEAK = """
import json, resource, sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from pipelines.config import load_config
from pipelines.ingest import ingest
files = [Path(p) for p in json.loads(sys.argv[1])]
archive = {"archive": {"location": sys.argv[2]}}
cfg = load_config(stores=archive, ingest={"workers": 2, "batch_megabytes": 32})
assert ingest(files, cfg).ok
mb = lambda who: resource.getrusage(who).ru_maxrss / 1024
print(json.dumps({"main": mb(resource.RUSAGE_SELF), "decoder": mb(resource.RUSAGE_CHILDREN)}))
"""


@pytest.mark.realdata
@pytest.mark.slow
def test_ingest_memory_stays_a_few_frames_however_many_files(tmp_path: Path):
    """Regression: every file was submitted to the decoders at once, and their frames piled up
    in the committing process while it committed. Now 24 OPERA frames (17 MB each) peak within
    what 6 frames need plus the bound: two batches (ingest.batch_megabytes 32: the one being
    written and the one filling) and the decode_ahead (4) frames; in each decoder, 2 frames
    (what its allocator keeps of the frames before)."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    files = sorted(radar_sample("composites/opera/20180824").glob("*.hdf"))
    peaks = []
    for n in (6, 24):
        names = json.dumps([str(p) for p in files[:n]])
        out = subprocess.run(
            [sys.executable, "-c", _PEAK, names, str(tmp_path / f"a{n}")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        peaks.append(json.loads(out.stdout.strip().splitlines()[-1]))
    frame_mb = 2200 * 1900 * 4 / 2**20
    assert peaks[1]["main"] - peaks[0]["main"] < 2 * 32 + 4 * frame_mb, peaks
    assert peaks[1]["decoder"] - peaks[0]["decoder"] < 2 * frame_mb, peaks
