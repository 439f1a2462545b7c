"""Regular grids in a projected CRS: the geometry every frame and domain shares.

A grid is north-up: row 0 is the northernmost row, so ``y`` decreases with the row index, as the
source images are laid out. Coordinates are cell centres in projection metres.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyproj


@lru_cache(maxsize=64)
def crs_from_wkt(wkt: str) -> pyproj.CRS:
    return pyproj.CRS.from_wkt(wkt)


@lru_cache(maxsize=64)
def wkt_of(crs: str) -> str:
    """WKT of anything pyproj.CRS accepts (cached: parsing a CRS costs milliseconds)."""
    return pyproj.CRS(crs).to_wkt()


@lru_cache(maxsize=64)
def _to_lonlat(wkt: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(crs_from_wkt(wkt), "EPSG:4326", always_xy=True)


@lru_cache(maxsize=64)
def _from_lonlat(wkt: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs("EPSG:4326", crs_from_wkt(wkt), always_xy=True)


WINDOW_OUTLINE_POINTS = 65  # points per side of a box taken into another CRS


@dataclass(frozen=True)
class Grid:
    crs_wkt: str  # the CRS, as WKT (pyproj.CRS.to_wkt())
    x0: float  # west edge, metres
    y0: float  # north edge, metres
    dx: float  # cell width, metres
    dy: float  # cell height, metres (positive)
    nx: int
    ny: int

    @classmethod
    def from_extent(
        cls, crs: str | pyproj.CRS, extent: tuple[float, float, float, float], resolution: float
    ) -> Grid:
        xmin, ymin, xmax, ymax = extent
        if xmax <= xmin or ymax <= ymin:
            raise ValueError(f"empty extent {extent}")
        nx = round((xmax - xmin) / resolution)
        ny = round((ymax - ymin) / resolution)
        wkt = crs.to_wkt() if isinstance(crs, pyproj.CRS) else wkt_of(crs)
        return cls(wkt, xmin, ymax, resolution, resolution, nx, ny)

    @classmethod
    def centred_on(cls, lat: float, lon: float, size_m: float, resolution: float) -> Grid:
        """A square azimuthal-equidistant grid centred on a point (a radar site)."""
        crs = pyproj.CRS.from_proj4(
            f"+proj=aeqd +lat_0={lat:.6f} +lon_0={lon:.6f} +ellps=WGS84 +units=m +no_defs"
        )
        half = size_m / 2
        return cls.from_extent(crs, (-half, -half, half, half), resolution)

    @property
    def crs(self) -> pyproj.CRS:
        return crs_from_wkt(self.crs_wkt)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ny, self.nx)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0 - self.ny * self.dy, self.x0 + self.nx * self.dx, self.y0)

    @property
    def x(self) -> np.ndarray:
        return self.x0 + (np.arange(self.nx) + 0.5) * self.dx

    @property
    def y(self) -> np.ndarray:
        return self.y0 - (np.arange(self.ny) + 0.5) * self.dy

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        """(row, col) of the cell holding projected point (x, y)."""
        return int(np.floor((self.y0 - y) / self.dy)), int(np.floor((x - self.x0) / self.dx))

    def same_as(self, other: Grid, tol: float = 1e-3) -> bool:
        return (
            self.shape == other.shape
            and (self.crs_wkt == other.crs_wkt or self.crs.equals(other.crs))
            and np.allclose(
                (self.x0, self.y0, self.dx, self.dy),
                (other.x0, other.y0, other.dx, other.dy),
                atol=tol,
            )
        )

    def window(self, bbox: tuple[float, float, float, float], crs: str | None = None) -> Grid:
        """The part of this grid, whole cells, that covers ``bbox`` (xmin, ymin, xmax, ymax) in
        ``crs`` (default: this grid's own); ValueError when they do not overlap. A box in
        another CRS is taken by its outline, densified, so that the cut covers all of it."""
        xmin, ymin, xmax, ymax = bbox
        if xmax <= xmin or ymax <= ymin:
            raise ValueError(f"empty box {bbox}")
        if crs is not None:
            t = np.linspace(0.0, 1.0, WINDOW_OUTLINE_POINTS)
            xs = np.concatenate([xmin + (xmax - xmin) * t, np.full_like(t, xmax)])
            xs = np.concatenate([xs, xmax - (xmax - xmin) * t, np.full_like(t, xmin)])
            ys = np.concatenate([np.full_like(t, ymin), ymin + (ymax - ymin) * t])
            ys = np.concatenate([ys, np.full_like(t, ymax), ymax - (ymax - ymin) * t])
            to_self = pyproj.Transformer.from_crs(crs, self.crs, always_xy=True)
            px, py = to_self.transform(xs, ys)
            if not (np.isfinite(px).all() and np.isfinite(py).all()):
                raise ValueError(f"box {bbox} in {crs} has no place on this grid's projection")
            xmin, xmax, ymin, ymax = px.min(), px.max(), py.min(), py.max()
        eps = 1e-6  # a box edge on a cell edge must not take the next cell
        c0 = max(0, int(np.floor((xmin - self.x0) / self.dx + eps)))
        c1 = min(self.nx, int(np.ceil((xmax - self.x0) / self.dx - eps)))
        r0 = max(0, int(np.floor((self.y0 - ymax) / self.dy + eps)))
        r1 = min(self.ny, int(np.ceil((self.y0 - ymin) / self.dy - eps)))
        if c1 <= c0 or r1 <= r0:
            raise ValueError(f"box {bbox} lies outside the grid (extent {self.extent})")
        x0, y0 = self.x0 + c0 * self.dx, self.y0 - r0 * self.dy
        return Grid(self.crs_wkt, x0, y0, self.dx, self.dy, c1 - c0, r1 - r0)

    def offset_in(self, outer: Grid, tol: float = 1e-6) -> tuple[int, int] | None:
        """(row, col) of this grid's first cell in ``outer`` when this grid is a window of it
        (same CRS and cells, aligned, inside); else None."""
        if not np.allclose((self.dx, self.dy), (outer.dx, outer.dy), rtol=tol, atol=0.0):
            return None
        col, row = (self.x0 - outer.x0) / self.dx, (outer.y0 - self.y0) / self.dy
        r, c = round(row), round(col)
        if abs(row - r) > tol * 1e3 or abs(col - c) > tol * 1e3:  # within a thousandth of a cell
            return None
        if r < 0 or c < 0 or r + self.ny > outer.ny or c + self.nx > outer.nx:
            return None
        if self.crs_wkt != outer.crs_wkt and not self.crs.equals(outer.crs):
            return None
        return r, c

    def cf_grid_mapping(self) -> dict[str, object]:
        """Attributes of the CF grid_mapping variable describing this CRS."""
        attrs: dict[str, object] = dict(self.crs.to_cf())
        attrs["crs_wkt"] = self.crs_wkt
        attrs["spatial_ref"] = self.crs_wkt
        attrs["proj4"] = self.proj4
        return attrs

    @property
    def proj4(self) -> str:
        """The CRS as a proj4 string (lossy, but what pysteps expects)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return self.crs.to_proj4()

    @classmethod
    def from_coords(cls, crs_wkt: str, x: np.ndarray, y: np.ndarray) -> Grid:
        """Rebuild a grid from stored cell-centre coordinates."""
        dx = float(x[1] - x[0]) if len(x) > 1 else 1.0
        dy = float(y[0] - y[1]) if len(y) > 1 else 1.0
        return cls(crs_wkt, float(x[0] - dx / 2), float(y[0] + dy / 2), dx, dy, len(x), len(y))

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.nx * self.dx / 2, self.y0 - self.ny * self.dy / 2)

    def lonlat_of(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple:
        """Longitude and latitude of projected points."""
        return _to_lonlat(self.crs_wkt).transform(x, y)

    def xy_of(self, lon: float, lat: float) -> tuple[float, float]:
        """Projected coordinates of a point."""
        return _from_lonlat(self.crs_wkt).transform(lon, lat)

    def contains_lonlat(self, lon: float, lat: float) -> bool:
        x, y = self.xy_of(lon, lat)
        xmin, ymin, xmax, ymax = self.extent
        return bool(xmin <= x <= xmax and ymin <= y <= ymax)

    def lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude of every cell centre, each (ny, nx)."""
        return self.lonlat_of(*np.meshgrid(self.x, self.y))
