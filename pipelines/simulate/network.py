"""A virtual radar network observing the synthetic storm: one ODIM_H5 PVOL per radar per cycle."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyproj
import yaml
from scipy.ndimage import map_coordinates

from pipelines.config import SimRadar, SimulatorConfig, ZRConfig
from pipelines.grid import Grid
from pipelines.radar.beam import gate_positions
from pipelines.radar.odim_writer import Sweep, write_pvol
from pipelines.radar.zr import rainrate_to_dbz
from pipelines.simulate.weather import StormField

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _SweepGeometry:
    rows: np.ndarray  # (n_rays, n_gates) fractional row in the truth grid
    cols: np.ndarray
    height_m: np.ndarray  # beam centre height above sea level
    range_m: np.ndarray  # (n_gates,) slant range of gate centres


class VirtualRadar:
    """Where each gate of each sweep of one radar falls on the truth grid."""

    def __init__(self, site: SimRadar, cfg: SimulatorConfig, truth: Grid):
        self.site, self.cfg = site, cfg
        self.azimuth_start = np.arange(cfg.n_rays) * 360.0 / cfg.n_rays
        azimuth = self.azimuth_start + 180.0 / cfg.n_rays
        gate_range = (np.arange(cfg.n_gates) + 0.5) * cfg.gate_m
        self.geometry = []
        for elevation in cfg.elevations_deg:
            x, y, height = gate_positions(
                site.lat, site.lon, site.height_m, azimuth, gate_range, elevation, truth.crs
            )
            self.geometry.append(
                _SweepGeometry(
                    rows=(truth.y0 - y) / truth.dy - 0.5,
                    cols=(x - truth.x0) / truth.dx - 0.5,
                    height_m=height,
                    range_m=gate_range,
                )
            )

    def observe(
        self, rain: np.ndarray, nominal: pd.Timestamp, zr: ZRConfig, rng: np.random.Generator
    ) -> list[Sweep]:
        """Reflectivity sweeps of the rain field: beam height profile, noise, sensitivity."""
        cfg = self.cfg
        sweeps = []
        for i, (elevation, geo) in enumerate(zip(cfg.elevations_deg, self.geometry, strict=True)):
            rate = map_coordinates(rain, [geo.rows, geo.cols], order=1, mode="nearest")
            dbz = rainrate_to_dbz(rate, zr)
            above = np.clip(geo.height_m / 1000.0 - cfg.freezing_level_km, 0, None)
            dbz = dbz - cfg.dbz_lapse_per_km * above + rng.normal(0, cfg.noise_db, dbz.shape)
            sensitivity = cfg.sensitivity_dbz_at_10km + 20 * np.log10(geo.range_m / 10_000.0)
            dbz = np.where((rate <= 0) | (dbz < sensitivity[None, :]), -np.inf, dbz)
            if i == 0 and self.site.blocked_sector_deg is not None:
                lo, hi = self.site.blocked_sector_deg
                centre = (self.azimuth_start + 180.0 / cfg.n_rays) % 360.0
                blocked = (centre - lo) % 360.0 <= (hi - lo) % 360.0
                dbz[blocked, :] = np.nan
            start = nominal + pd.Timedelta(seconds=i * cfg.sweep_seconds)
            sweeps.append(
                Sweep(
                    elevation_deg=elevation,
                    start=start,
                    end=start + pd.Timedelta(seconds=0.8 * cfg.sweep_seconds),
                    range_start_m=0.0,
                    gate_m=cfg.gate_m,
                    dbz=dbz,
                    ray_azimuth_start_deg=self.azimuth_start,
                )
            )
        return sweeps


def truth_grid(sites: list[SimRadar], cfg: SimulatorConfig) -> Grid:
    """The grid of the simulated weather: covers every radar's reach plus a margin."""
    lat0 = float(np.mean([s.lat for s in sites]))
    lon0 = float(np.mean([s.lon for s in sites]))
    crs = pyproj.CRS.from_proj4(f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +ellps=WGS84 +units=m")
    to_xy = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    xs, ys = to_xy.transform([s.lon for s in sites], [s.lat for s in sites])
    reach = cfg.n_gates * cfg.gate_m + cfg.margin_km * 1000.0
    res = cfg.grid_resolution_m

    def snap(v: float) -> float:
        return float(np.round(v / res) * res)

    extent = (
        snap(min(xs) - reach),
        snap(min(ys) - reach),
        snap(max(xs) + reach),
        snap(max(ys) + reach),
    )
    return Grid.from_extent(crs, extent, res)


NETWORK_CONFIG = "network.yaml"
NETWORK_DOMAIN = "simnet"


def write_network_config(out_dir: Path, sites: list[SimRadar], cfg: SimulatorConfig) -> Path:
    """A configuration defining the network's mosaic domain (every radar's reach, 1 km), for
    ``motioncast ingest --config``: the radars' volumes then merge into one domain; and the
    radar sites that maps mark (``plot.sites``)."""
    truth = truth_grid(sites, cfg)
    margin = cfg.margin_km * 1000.0
    xmin, ymin, xmax, ymax = truth.extent
    domain = {
        "crs": truth.proj4,
        "extent": [xmin + margin, ymin + margin, xmax - margin, ymax - margin],
        "resolution": 1000.0,
        "radars": [s.id for s in sites],
    }
    path = Path(out_dir) / NETWORK_CONFIG
    header = "# The synthetic network's mosaic domain (written by motioncast simulate)\n"
    sites = [{"name": s.id, "lon": s.lon, "lat": s.lat} for s in sites]
    config = {"domains": {NETWORK_DOMAIN: domain}, "plot": {"sites": sites}}
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return path


def simulate_network(
    out_dir: Path,
    start: pd.Timestamp,
    minutes: int,
    n_radars: int,
    seed: int,
    cfg: SimulatorConfig,
    zr: ZRConfig,
    on_cycle: Callable[[int, int], None] | None = None,
    pace: Callable[[pd.Timestamp], None] | None = None,
    config_dir: Path | None = None,
) -> list[Path]:
    """Write one PVOL per radar every ``cfg.interval_minutes`` from ``start`` for ``minutes``.

    Same seed, same files. Returns the written paths in time order. Also writes
    ``network.yaml`` (into ``config_dir``, default ``out_dir``), the configuration of the
    network's mosaic domain. ``pace(time)`` is called before each time's volumes (a live run
    waits there for its clock). Each file appears whole (written beside, then renamed), so a
    watcher of ``out_dir`` never reads half a volume.
    """
    if not 1 <= n_radars <= len(cfg.radars):
        raise ValueError(f"--radars must be between 1 and {len(cfg.radars)} (configured sites)")
    start = pd.Timestamp(start)
    start = start.tz_convert(None) if start.tzinfo else start
    sites = cfg.radars[:n_radars]
    rng = np.random.default_rng(seed)
    truth = truth_grid(sites, cfg)
    storm = StormField(truth, cfg, rng)
    radars = [VirtualRadar(site, cfg, truth) for site in sites]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_network_config(config_dir or out_dir, sites, cfg)
    n_cycles = minutes // cfg.interval_minutes + 1
    written = []
    for k in range(n_cycles):
        if k:
            storm.step(cfg.interval_minutes * 60.0)
        nominal = start + pd.Timedelta(minutes=k * cfg.interval_minutes)
        if pace is not None:
            pace(nominal)
        rain = storm.rain_rate()
        for radar in radars:
            # time first, as radar networks name files: sorted names interleave the radars
            path = out_dir / f"{nominal:%Y%m%dT%H%M}Z_{radar.site.id}.pvol.h5"
            partial = path.with_name(f".{path.name}.partial")
            write_pvol(
                partial,
                node=radar.site.id,
                place=f"Synthetic {radar.site.id}",
                lat=radar.site.lat,
                lon=radar.site.lon,
                height_m=radar.site.height_m,
                nominal_time=nominal,
                sweeps=radar.observe(rain, nominal, zr, rng),
                encoding=radar.site.encoding,
                software="motioncast simulate",
            )
            partial.replace(path)
            written.append(path)
        if on_cycle:
            on_cycle(k + 1, n_cycles)
        log.debug("cycle %s: wet %.2f, max %.1f mm/h", nominal, (rain > 0).mean(), rain.max())
    return written
