"""A motion field that varies in space and in time.

V(x, t) = mean flow (turning and accelerating) + a Rankine vortex + linear shear + convergence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.config import SimulatorConfig


@dataclass(frozen=True)
class MotionField:
    speed0: float  # m/s, mean flow speed at t = 0
    accel: float  # m/s per second
    heading0: float  # rad, direction the mean flow goes to (0 = east, counter-clockwise)
    turning: float  # rad per second
    vortex_xy: tuple[float, float]  # m, vortex centre (moves with the mean flow)
    vortex_speed: float  # m/s, peak tangential speed (counter-clockwise when positive)
    vortex_radius: float  # m, radius of that peak
    shear: float  # du/dy, 1/s
    divergence: float  # du/dx = dv/dy, 1/s (negative: convergence)
    centre_xy: tuple[float, float]  # m, the point where shear and divergence vanish

    @classmethod
    def draw(
        cls, cfg: SimulatorConfig, rng: np.random.Generator, extent: tuple[float, ...]
    ) -> MotionField:
        xmin, ymin, xmax, ymax = extent
        centre = ((xmin + xmax) / 2, (ymin + ymax) / 2)
        vortex = (
            rng.uniform(xmin + 0.25 * (xmax - xmin), xmax - 0.25 * (xmax - xmin)),
            rng.uniform(ymin + 0.25 * (ymax - ymin), ymax - 0.25 * (ymax - ymin)),
        )
        return cls(
            speed0=rng.uniform(*cfg.mean_speed_m_s),
            accel=rng.uniform(*cfg.acceleration_m_s_per_h) / 3600.0,
            heading0=rng.uniform(0, 2 * np.pi),
            turning=np.deg2rad(rng.uniform(*cfg.turning_deg_per_h)) / 3600.0,
            vortex_xy=vortex,
            vortex_speed=rng.uniform(*cfg.vortex_speed_m_s) * rng.choice([-1.0, 1.0]),
            vortex_radius=rng.uniform(*cfg.vortex_radius_km) * 1000.0,
            shear=rng.uniform(*cfg.shear_per_s),
            divergence=rng.uniform(*cfg.divergence_per_s),
            centre_xy=centre,
        )

    def mean_flow(self, t: float) -> tuple[float, float]:
        speed = max(self.speed0 + self.accel * t, 0.0)
        heading = self.heading0 + self.turning * t
        return speed * np.cos(heading), speed * np.sin(heading)

    def velocity(self, x: np.ndarray, y: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(u, v) in m/s at points (x, y) at time t seconds."""
        u0, v0 = self.mean_flow(t)
        # the vortex drifts with the mean flow (displacement integrated analytically enough:
        # the mean flow changes slowly, so use the mean of the flow at 0 and t)
        um, vm = (np.add(self.mean_flow(0.0), (u0, v0))) / 2
        vx = x - (self.vortex_xy[0] + um * t)
        vy = y - (self.vortex_xy[1] + vm * t)
        r = np.hypot(vx, vy) + 1e-6
        rr = r / self.vortex_radius
        tangential = self.vortex_speed * np.where(rr < 1.0, rr, 1.0 / rr)
        cx = x - self.centre_xy[0]
        cy = y - self.centre_xy[1]
        u = u0 - tangential * vy / r + self.shear * cy + self.divergence * cx
        v = v0 + tangential * vx / r + self.divergence * cy
        return u, v
