"""Every composite reader on real samples: units, times and geolocation checked independently."""

import re
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pandas as pd
import pytest

from pipelines.config import MotioncastConfig
from pipelines.radar.errors import BadInputError
from pipelines.radar.formats import detect_format
from pipelines.radar.pysteps_io import importers
from pipelines.radar.readers import get_method
from tests.conftest import radar_sample

CFG = MotioncastConfig()
pytestmark = pytest.mark.realdata


def _decode(path: Path):
    fmt = detect_format(path, path.read_bytes()[:16])
    decoded = get_method(fmt)(path, CFG)
    return fmt, decoded, decoded.to_grid(decoded.grid)


def _same_with_nan(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-6, atol=1e-6)


def test_knmi_rate_time_and_corners():
    files = sorted(radar_sample("composites/KNMI/2010/08").glob("*.h5"))
    assert len(files) == 92
    for path in files:  # our one-open reader gives exactly pysteps' field, as float32 mm/h
        fmt, d, rate = _decode(path)
        assert fmt == "knmi_hdf5" and d.source == "knmi" and rate.dtype == np.float32
        raw, _, meta = importers.import_knmi_hdf5(str(path))
        assert meta["unit"] == "mm" and meta["accutime"] == 5 and d.time_step_minutes == 5
        expected = np.ma.filled(np.ma.asarray(raw, dtype=np.float64), np.nan).astype(np.float32)
        np.testing.assert_array_equal(rate, expected * np.float32(12.0))  # 5-min depth -> mm/h
    assert np.nanmax(rate) > 1 and d.radars == "De_Bilt,Den_Helder"
    # file name time is the end of the accumulation; the reader takes it from the content
    stamp = re.search(r"(\d{12})", path.name).group(1)
    assert d.time == pd.to_datetime(stamp, format="%Y%m%d%H%M")
    with h5py.File(path) as f:  # lon/lat of the image corners, as KNMI states them
        c = f["geographic"].attrs["geo_product_corners"].reshape(4, 2)  # LL, UL, UR, LR
    lon, lat = d.grid.lonlat()
    half = 0.01  # degrees: half a 1 km pixel, about
    assert lon[0, 0] == pytest.approx(c[1][0], abs=half) and lat[0, 0] == pytest.approx(
        c[1][1], abs=half
    )
    assert lon[-1, -1] == pytest.approx(c[3][0], abs=half)
    assert lat[-1, -1] == pytest.approx(c[3][1], abs=half)
    assert d.grid.dx == 1000.0 and d.grid.shape == (765, 700)


def test_a_knmi_reflectivity_with_a_negative_offset_goes_through_the_zr(tmp_path: Path):
    """Regression: 'GEO=0.500000*PV+-32.000000', as KNMI writes reflectivity calibrations, was
    refused as unreadable."""
    from pipelines.radar.zr import dbz_to_rainrate

    path = tmp_path / "RAD_NL25_PCP_NA_201008260000.h5"
    path.write_bytes(sorted(radar_sample("composites/KNMI/2010/08").glob("*.h5"))[40].read_bytes())
    with h5py.File(path, "r+") as f:
        f["image1"].attrs["image_geo_parameter"] = np.bytes_("REFLECTIVITY_[DBZ]")
        f["image1/calibration"].attrs["calibration_formulas"] = np.bytes_(
            "GEO=0.500000*PV+-32.000000"
        )
        codes = f["image1/image_data"][()]
    fmt, d, rate = _decode(path)
    assert fmt == "knmi_hdf5" and d.product == "KNMI reflectivity"
    dbz = np.where(codes == 65535, np.nan, codes * 0.5 - 32.0)
    _same_with_nan(rate, dbz_to_rainrate(dbz, CFG.zr))
    assert np.nanmax(rate) > 0


@pytest.mark.parametrize(
    ("group", "attr", "value", "reason"),
    [
        ("image1/calibration", "calibration_formulas", "GEO=log(PV)", "calibration formula"),
        ("image1", "image_geo_parameter", "ECHO_TOPS_[KM]", "not a rain quantity"),
        ("overview", "product_datetime_end", "yesterday", "unreadable product times"),
    ],
)
def test_a_knmi_file_with_unusable_metadata_is_one_line(
    tmp_path: Path, group: str, attr: str, value: str, reason: str
):
    path = tmp_path / "RAD_NL25_RAP_5min_201008260000.h5"
    path.write_bytes(sorted(radar_sample("composites/KNMI/2010/08").glob("*.h5"))[0].read_bytes())
    with h5py.File(path, "r+") as f:
        f[group].attrs[attr] = np.bytes_(value)
    with pytest.raises(BadInputError) as err:
        _decode(path)
    assert str(path) in str(err.value) and reason in str(err.value)
    assert "\n" not in str(err.value)


def test_mch_gif_rate_time_and_swiss_grid():
    files = sorted(radar_sample("composites/mch/20160711").glob("*.gif"))
    path = files[12]
    fmt, d, rate = _decode(path)
    assert fmt == "mch_gif" and d.source == "mch"
    raw, _, meta = importers.import_mch_gif(str(path), product="AQC", unit="mm", accutime=5)
    _same_with_nan(rate, raw * 12.0)
    m = re.search(r"AQC(\d{2})(\d{3})(\d{4})", path.name)
    assert d.time == pd.to_datetime(f"20{m[1]}{m[2]}{m[3]}", format="%Y%j%H%M")
    # Bern's old observatory is the origin of the Swiss grid: E 600 km, N 200 km
    row, col = d.grid.cell_of(600_000.0, 200_000.0)
    lon, lat = d.grid.lonlat()
    assert lon[row, col] == pytest.approx(7.4396, abs=0.01)
    assert lat[row, col] == pytest.approx(46.9524, abs=0.01)
    assert 0.25 < np.isnan(rate).mean() < 0.4


def test_rmi_odim_composite_is_a_rate_not_divided_by_accutime():
    files = sorted(radar_sample("composites/rmi/radqpe").rglob("*.hdf"))
    path = files[20]
    fmt, d, rate = _decode(path)
    assert fmt == "odim_comp" and d.source == "rmi"
    raw, _, meta = importers.import_odim_hdf5(str(path), qty="RATE")
    assert meta["unit"] == "mm/h" and meta["accutime"] == 15.0  # the metadata quirk
    _same_with_nan(rate, raw)
    assert d.time == pd.to_datetime(path.name[:14], format="%Y%m%d%H%M%S")
    with h5py.File(path) as f:
        where = f["where"].attrs
        ul, lr = (where["UL_lon"], where["UL_lat"]), (where["LR_lon"], where["LR_lat"])
    lon, lat = d.grid.lonlat()
    assert lon[0, 0] == pytest.approx(ul[0], abs=0.02) and lat[0, 0] == pytest.approx(
        ul[1], abs=0.01
    )
    assert lon[-1, -1] == pytest.approx(lr[0], abs=0.02)
    assert lat[-1, -1] == pytest.approx(lr[1], abs=0.01)
    assert d.radars.split(",")[0] == "behel"


def write_bom_rf3(
    path: Path,
    valid: str = "2026-06-01 12:06",
    depth_mm: float = 0.05,
    step_minutes: int = 6,
    bad_cells: int = 0,
) -> np.ndarray:
    """A small Rainfields 3 file as the BoM writes them (no sample of the real ones lies here),
    with ``bad_cells`` cells of -0.1 mm, as real BoM files sometimes hold."""
    n = 64
    values = np.zeros((n, n), dtype=np.float32)
    values[10:20, 30:40] = depth_mm
    values[0, 0] = 2.0
    values.ravel()[n * 40 : n * 40 + bad_cells] = -0.1
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("x", n)
        nc.createDimension("y", n)
        nc.createDimension("n2", 2)
        proj = nc.createVariable("proj", "i4")
        proj.grid_mapping_name = "albers_conical_equal_area"
        proj.longitude_of_central_meridian = 144.752
        proj.latitude_of_projection_origin = -37.852
        proj.standard_parallel = [-18.0, -36.0]
        x = nc.createVariable("x", "f8", ("x",))
        x.units = "km"
        x[:] = -16.0 + 0.5 * np.arange(n) + 0.25
        y = nc.createVariable("y", "f8", ("y",))
        y.units = "km"
        y[:] = 16.0 - 0.5 * np.arange(n) - 0.25
        for name, when in (("valid_time", valid), ("start_time", None)):
            t = nc.createVariable(name, "i8")
            t.units = "seconds since 1970-01-01 00:00:00"
            stamp = pd.Timestamp(valid) - (
                pd.Timedelta(minutes=step_minutes) if when is None else pd.Timedelta(0)
            )
            t[...] = int(stamp.timestamp())
        p = nc.createVariable("precipitation", "f4", ("y", "x"), fill_value=-1.0)
        p.units = "mm"
        p[:] = values
    return values


def test_bom_rainfields_rate_and_time(tmp_path: Path):
    path = tmp_path / "310_20260601_120600.prcp-c10.nc"
    depth = write_bom_rf3(path)
    fmt, d, rate = _decode(path)
    assert fmt == "bom_rf3" and d.source == "bom"
    assert d.time == pd.Timestamp("2026-06-01 12:06")
    assert d.time_step_minutes == 6
    np.testing.assert_allclose(rate, depth * 10.0, rtol=1e-6)  # mm per 6 min -> mm/h
    assert d.grid.dx == 500.0 and d.grid.shape == (64, 64)
    lon, lat = d.grid.lonlat_of(*d.grid.centre)
    assert lon == pytest.approx(144.752, abs=0.01) and lat == pytest.approx(-37.852, abs=0.01)


def test_composite_onto_a_configured_domain_is_nearest_neighbour():
    import pyproj

    from pipelines.ingest import decode_file

    path = sorted(radar_sample("composites/KNMI/2010/08").glob("*.h5"))[40]
    cfg = MotioncastConfig.model_validate(
        {
            "domains": {
                "nl": {
                    "crs": "EPSG:3035",
                    "extent": [3.9e6, 3.1e6, 4.1e6, 3.3e6],
                    "resolution": 2000,
                }
            }
        }
    )
    frame = decode_file(path, cfg)  # the KNMI grid's centre lies in 'nl': it goes there
    assert frame.domain == "nl" and frame.grid.shape == (100, 100)
    native = get_method("knmi_hdf5")(path, CFG)
    values = native.to_grid(native.grid)
    to_native = pyproj.Transformer.from_crs("EPSG:3035", native.grid.crs, always_xy=True)
    for row, col in [(10, 10), (50, 50), (80, 30)]:
        x, y = to_native.transform(frame.grid.x[col], frame.grid.y[row])
        r, c = native.grid.cell_of(x, y)
        expected = values[r, c]
        got = frame.precip[row, col]
        assert (np.isnan(got) and np.isnan(expected)) or got == expected
    assert np.isfinite(frame.precip).mean() > 0.3


def test_fmi_pgm_reflectivity_with_the_files_own_zr(tmp_path: Path):
    import gzip

    from pipelines.config import ZRConfig
    from pipelines.radar.zr import dbz_to_rainrate

    files = sorted(radar_sample("composites/fmi/20160928").glob("*.pgm.gz"))
    assert len(files) == 40
    path = files[12]
    fmt, d, rate = _decode(path)
    assert fmt == "fmi_pgm" and d.source == "fmi" and d.time_step_minutes == 5
    assert d.time == pd.Timestamp("2016-09-28T15:45")  # 14:45 + 12 x 5 min, from '# obstime'
    dbz, _, meta = importers.import_fmi_pgm(str(path), gzipped=True)
    assert meta["unit"] == "dBZ" and (meta["zr_a"], meta["zr_b"]) == (223.0, 1.53)
    assert rate.shape == (1226, 760) and "KOR" in d.radars
    _same_with_nan(rate, dbz_to_rainrate(dbz, ZRConfig(a=223.0, b=1.53)))
    wet = np.nanmax(dbz)  # R = (Z / 223)^(1 / 1.53), not Marshall-Palmer's (Z / 200)^(1 / 1.6)
    assert np.nanmax(rate) == pytest.approx((10 ** (wet / 10) / 223.0) ** (1 / 1.53), rel=1e-5)
    assert np.isnan(rate).mean() == pytest.approx(np.isnan(dbz).mean())  # outside: unknown
    assert d.grid.dx == pytest.approx(999.674, abs=1e-3)
    plain = tmp_path / "plain.pgm"  # the same file not gzipped: found by content too
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    fmt_plain, d_plain, rate_plain = _decode(plain)
    assert fmt_plain == "fmi_pgm" and d_plain.time == d.time
    _same_with_nan(rate_plain, rate)


@pytest.mark.slow
def test_every_opera_composite_ingests_equal_to_pysteps_reading(tmp_path: Path):
    """The 24 OPERA composites (quantity in dataset1/what, ORG:247): each frame in the store
    equals pysteps' import_opera_hdf5 in mm/h, unknown cells in the same places, except the
    clutter cells above 1000 mm/h that the bad-cell rule makes unknown; domain 'opera', 15 min."""
    from pipelines.ingest import ingest
    from pipelines.store import Archive

    files = sorted(radar_sample("composites/opera/20180824").glob("*.hdf"))
    assert len(files) == 24
    archive = CFG.stores.archive.model_copy(update={"location": str(tmp_path / "archive")})
    cfg = CFG.model_copy(update={"stores": CFG.stores.model_copy(update={"archive": archive})})
    report = ingest(files, cfg)
    assert report.failed == [] and report.added["opera"] == 24
    ds = Archive(tmp_path / "archive").dataset("opera")
    assert int(ds.attrs["time_step_minutes"]) == 15 and ds.sizes["y"] == 2200
    for path in files[::6]:
        raw, _, meta = importers.import_opera_hdf5(str(path))
        assert meta["unit"] == "mm/h"
        raw = np.where(raw > 1000.0, np.nan, raw)  # clutter: the bad-cell rule
        time = pd.to_datetime(path.name.split("_")[-1][:12], format="%Y%m%d%H%M")
        stored = ds.precip.sel(time=time).values
        _same_with_nan(stored, raw.astype(np.float32))
    assert set(ds.radars.values[0].split(",")) >= {"eslid", "chdol", "deumd"}


def _odim_comp(path: Path, qty: str, at_data_level: bool, values: np.ndarray, **what) -> None:
    """A small ODIM COMP file (LAEA, 2 km) with ``qty`` stored as uint8 (gain 0.5, offset
    -32 for DBZH, else gain 0.1), nodata 255, undetect 0."""
    from pipelines.radar.attributes import attr_text  # noqa: F401 (the reader's decoder)

    ny, nx = values.shape
    with h5py.File(path, "w") as f:
        f.attrs["Conventions"] = np.bytes_("ODIM_H5/V2_2")
        w = f.create_group("what").attrs
        w["object"], w["source"] = np.bytes_("COMP"), np.bytes_("ORG:247")
        w["date"], w["time"] = np.bytes_("20260601"), np.bytes_("120000")
        where = f.create_group("where").attrs
        where["projdef"] = np.bytes_("+proj=laea +lat_0=55 +lon_0=10 +x_0=0 +y_0=0 +ellps=WGS84")
        where["xsize"], where["ysize"], where["xscale"], where["yscale"] = nx, ny, 2000.0, 2000.0
        import pyproj

        proj = pyproj.Proj("+proj=laea +lat_0=55 +lon_0=10 +x_0=0 +y_0=0 +ellps=WGS84")
        corners = {"LL": (0, -ny), "UL": (0, 0), "UR": (nx, 0), "LR": (nx, -ny)}
        for name, (i, j) in corners.items():
            lon, lat = proj(i * 2000.0, j * 2000.0, inverse=True)
            where[f"{name}_lon"], where[f"{name}_lat"] = lon, lat
        ds = f.create_group("dataset1")
        level = ds.create_group("data1")
        attrs = {
            "quantity": np.bytes_(qty),
            "gain": 0.5 if qty == "DBZH" else 0.1,
            "offset": -32.0 if qty == "DBZH" else 0.0,
            "nodata": 255.0,
            "undetect": 0.0,
            "startdate": np.bytes_("20260601"),
            "starttime": np.bytes_("114500"),
            "enddate": np.bytes_("20260601"),
            "endtime": np.bytes_("120000"),
            **what,
        }
        target = level.create_group("what") if at_data_level else ds.create_group("what")
        for key, value in attrs.items():
            target.attrs[key] = value
        level.create_dataset("data", data=values.astype(np.uint8))


def test_odim_composites_read_their_quantity_at_either_level_as_pysteps_does(tmp_path: Path):
    codes = np.full((40, 50), 20, dtype=np.uint8)
    codes[:5] = 255  # nodata: unknown
    codes[5:10] = 0  # undetect: dry
    for qty, level in (("RATE", False), ("ACRR", True), ("DBZH", False)):
        path = tmp_path / f"{qty}.h5"
        _odim_comp(path, qty, level, codes)
        fmt, d, rate = _decode(path)
        raw, _, meta = importers.import_odim_hdf5(str(path), qty=qty)
        assert fmt == "odim_comp" and d.source == "opera" and d.time_step_minutes == 15
        assert np.isnan(rate[:5]).all() and (rate[5:10] == 0).all()
        if qty == "RATE":
            _same_with_nan(rate, raw)
            assert rate[20, 20] == pytest.approx(2.0)
        elif qty == "ACRR":  # 2 mm in 15 minutes
            assert rate[20, 20] == pytest.approx(8.0)
        else:  # 20 x 0.5 - 32 = -22 dBZ: below zr.min_dbz, dry
            assert rate[20, 20] == 0.0
    none = tmp_path / "none.h5"
    _odim_comp(none, "QIND", False, codes)
    with pytest.raises(Exception, match="no ODIM composite quantity among RATE, ACRR, DBZH"):
        _decode(none)


@pytest.mark.slow
def test_every_mrms_file_ingests_equal_to_pysteps_reading(tmp_path: Path):
    """The 36 MRMS PrecipRate GRIB2 files: detected by content, each frame equal to pysteps'
    import_mrms_grib(window_size=1), unknown cells in the same places; 2-minute steps on the
    domain 'mrms', lon/lat coordinates in degrees, the file's earth shape kept."""
    from pipelines.config import load_config
    from pipelines.ingest import ingest
    from pipelines.store import Archive

    files = sorted(radar_sample("composites/mrms/2019/06/10").glob("*.grib2"))
    assert len(files) == 36
    report = ingest(files, load_config(stores={"archive": {"location": tmp_path / "archive"}}))
    assert report.failed == [] and report.added["mrms"] == 36
    ds = Archive(tmp_path / "archive").dataset("mrms")
    assert int(ds.attrs["time_step_minutes"]) == 2
    assert ds.sizes["y"] == 3500 and ds.sizes["x"] == 7000
    assert ds.x.attrs["units"] == "degrees_east" and ds.y.attrs["units"] == "degrees_north"
    assert ds.x.values[0] == pytest.approx(-129.995) and ds.y.values[0] == pytest.approx(54.995)
    for path in files[::12]:
        raw, _, meta = importers.import_mrms_grib(str(path), window_size=1)
        time = pd.to_datetime(path.stem.split("_")[-1], format="%Y%m%d-%H%M%S")
        _same_with_nan(ds.precip.sel(time=time).values, raw.astype(np.float32))


def test_a_truncated_grib2_is_one_line_and_quarantined(tmp_path: Path):
    from pipelines.config import load_config
    from pipelines.ingest import ingest

    whole = sorted(radar_sample("composites/mrms/2019/06/10").glob("*.grib2"))[0]
    cut = tmp_path / "in" / whole.name
    cut.parent.mkdir()
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    report = ingest([cut], load_config(stores={"archive": {"location": tmp_path / "archive"}}))
    (line,) = report.failed
    assert line.startswith(str(cut)) and "unreadable GRIB2" in line and "\n" not in line
    assert [p.name for p in (tmp_path / "archive.quarantine").rglob("*.grib2")] == [whole.name]
    other = tmp_path / "other.grib2"
    other.write_bytes(b"GRIB\x00\x00\x00\x02" + bytes(8))  # discipline 0: meteorological
    with pytest.raises(Exception, match="GRIB2 of discipline 0, not a radar product"):
        _decode(other)
