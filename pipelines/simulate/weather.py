"""A synthetic rain field with the structure of radar rain, evolving in a moving frame.

A Gaussian field G is the sum of scale bands of power-law noise (a STEPS-like cascade). Every step
each band is advected semi-Lagrangian along the motion field and refreshed as an AR(1) process,
large scales slowly and small scales fast: that is growth and decay. Convective cells (Gaussian
bumps with a life cycle) ride on top. Rain falls where G exceeds the quantile that gives the
wet-area share of the moment, with a log-rate that grows with the excess (lognormal-like).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates

from pipelines.config import SimulatorConfig
from pipelines.grid import Grid
from pipelines.simulate.motion import MotionField


@dataclass
class _Cell:
    x: float
    y: float
    sigma: float  # m
    peak: float  # in units of G's standard deviation
    age: float  # s
    life: float  # s

    def amplitude(self) -> float:
        return self.peak * np.sin(np.pi * min(self.age / self.life, 1.0)) ** 2


class StormField:
    """The truth: surface rain rate (mm/h) on ``grid`` at time ``t`` seconds from the start."""

    def __init__(self, grid: Grid, cfg: SimulatorConfig, rng: np.random.Generator):
        self.grid, self.cfg, self.rng = grid, cfg, rng
        self.t = 0.0
        self.motion = MotionField.draw(cfg, rng, grid.extent)
        self._xx, self._yy = np.meshgrid(grid.x, grid.y)
        self._filters = self._band_filters()
        self.bands = [self._noise(f) for f in self._filters]
        self.cells: list[_Cell] = []
        self._wet_phase = rng.uniform(0, 2 * np.pi)
        self._wet_period = rng.uniform(1.5, 4.0) * 3600.0

    def _band_filters(self) -> list[np.ndarray]:
        """Fourier amplitude filters of the power-law noise split into scale bands."""
        ny, nx = self.grid.shape
        ky = np.fft.fftfreq(ny, d=self.grid.dy / 1000.0)  # cycles per km
        kx = np.fft.rfftfreq(nx, d=self.grid.dx / 1000.0)
        k = np.hypot(*np.meshgrid(kx, ky))
        k[0, 0] = np.inf
        amplitude = k ** (-self.cfg.spectral_slope / 2.0)
        wavelength = 1.0 / k
        edges = [np.inf, *self.cfg.band_edges_km, 0.0]
        filters = []
        for hi, lo in zip(edges[:-1], edges[1:], strict=True):
            f = np.where((wavelength <= hi) & (wavelength > lo), amplitude, 0.0)
            f[0, 0] = 0.0
            filters.append(f)
        total = np.sqrt(sum(np.sum(f**2) for f in filters))
        return [f / total * np.sqrt(nx * ny) for f in filters]

    def _noise(self, band_filter: np.ndarray) -> np.ndarray:
        white = np.fft.rfft2(self.rng.standard_normal(self.grid.shape))
        return np.fft.irfft2(white * band_filter, s=self.grid.shape)

    def _advect(self, field: np.ndarray, dt: float) -> np.ndarray:
        """Semi-Lagrangian backward step: the value arriving at x left from x - V dt."""
        u, v = self.motion.velocity(self._xx, self._yy, self.t + dt / 2)
        cols = (self._xx - u * dt - self.grid.x0) / self.grid.dx - 0.5
        rows = (self.grid.y0 - (self._yy - v * dt)) / self.grid.dy - 0.5
        return map_coordinates(field, [rows, cols], order=1, mode="grid-wrap")

    def step(self, dt: float) -> None:
        memory = self.cfg.band_memory
        for i, (band, filt) in enumerate(zip(self.bands, self._filters, strict=True)):
            phi = memory[i] ** (dt / 300.0)
            self.bands[i] = phi * self._advect(band, dt) + np.sqrt(1 - phi**2) * self._noise(filt)
        for cell in self.cells:
            u, v = self.motion.velocity(np.array(cell.x), np.array(cell.y), self.t)
            cell.x += float(u) * dt
            cell.y += float(v) * dt
            cell.age += dt
        self.cells = [c for c in self.cells if c.age < c.life]
        self._spawn_cells(dt)
        self.t += dt

    def _spawn_cells(self, dt: float) -> None:
        n = self.rng.poisson(self.cfg.cells_per_hour * dt / 3600.0)
        if n == 0:
            return
        g = self._gaussian()
        # cells are born inside existing rain areas (embedded convection)
        weights = np.clip(g - np.quantile(g, 0.7), 0, None).ravel()
        if weights.sum() == 0:
            return
        picks = self.rng.choice(weights.size, size=n, p=weights / weights.sum())
        for p in picks:
            r, c = divmod(int(p), self.grid.nx)
            self.cells.append(
                _Cell(
                    x=float(self.grid.x[c]),
                    y=float(self.grid.y[r]),
                    sigma=self.rng.uniform(3e3, 9e3),
                    peak=self.rng.uniform(1.0, 3.0),
                    age=0.0,
                    life=self.rng.uniform(25, 75) * 60.0,
                )
            )

    def _gaussian(self) -> np.ndarray:
        g = sum(self.bands)
        return (g - g.mean()) / g.std()

    def wet_fraction(self) -> float:
        lo, hi = self.cfg.wet_fraction
        phase = self._wet_phase + 2 * np.pi * self.t / self._wet_period
        return lo + (hi - lo) * 0.5 * (1 + np.sin(phase))

    def rain_rate(self) -> np.ndarray:
        """Surface rain rate (mm/h), float32 (ny, nx)."""
        g = self._gaussian()
        threshold = np.quantile(g, 1.0 - self.wet_fraction())
        for cell in self.cells:
            d2 = (self._xx - cell.x) ** 2 + (self._yy - cell.y) ** 2
            g = g + cell.amplitude() * np.exp(-d2 / (2 * cell.sigma**2))
        excess = g - threshold
        rate = self.cfg.edge_rain_mm_h * np.exp(self.cfg.intensity_slope * np.clip(excess, 0, None))
        rate = np.where(excess > 0, np.minimum(rate, self.cfg.max_rain_mm_h), 0.0)
        return rate.astype(np.float32)
