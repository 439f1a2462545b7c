"""Beam propagation in the standard 4/3 effective Earth radius model (Doviak and Zrnic 2.28)."""

from __future__ import annotations

import numpy as np
import pyproj

EARTH_RADIUS_M = 6_371_000.0
EFFECTIVE_RADIUS_FACTOR = 4.0 / 3.0


def beam_height_and_ground_range(
    slant_range_m: np.ndarray, elevation_deg: np.ndarray | float, antenna_height_m: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Height of the beam centre above sea level and its distance along the ground, in metres.

    h = sqrt(r^2 + (k a)^2 + 2 r k a sin(theta)) - k a + h0
    s = k a asin(r cos(theta) / (k a + h - h0))
    """
    ka = EFFECTIVE_RADIUS_FACTOR * EARTH_RADIUS_M
    r = np.asarray(slant_range_m, dtype=np.float64)
    theta = np.deg2rad(elevation_deg)
    rise = np.sqrt(r**2 + ka**2 + 2.0 * r * ka * np.sin(theta)) - ka
    ground = ka * np.arcsin(r * np.cos(theta) / (ka + rise))
    return rise + antenna_height_m, ground


def gate_positions(
    lat: float,
    lon: float,
    antenna_height_m: float,
    azimuth_deg: np.ndarray,
    range_m: np.ndarray,
    elevation_deg: float,
    crs: pyproj.CRS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projected x, y (in ``crs``) and beam height of every gate centre, each (n_rays, n_gates).

    Ground distance along each azimuth is laid out in the radar's azimuthal-equidistant frame,
    which keeps distances and bearings from the site exact, then projected to ``crs``.
    """
    height, ground = beam_height_and_ground_range(range_m, elevation_deg, antenna_height_m)
    az = np.deg2rad(np.asarray(azimuth_deg, dtype=np.float64))[:, None]
    site = pyproj.CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +ellps=WGS84 +units=m")
    to_crs = pyproj.Transformer.from_crs(site, crs, always_xy=True)
    x, y = to_crs.transform(np.sin(az) * ground[None, :], np.cos(az) * ground[None, :])
    return x, y, np.broadcast_to(height, x.shape)
