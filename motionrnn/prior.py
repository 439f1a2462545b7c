"""The learned low-dimensional stage on S-PROG (``motionrnn.sprog``): the prior the MotionRNN
refines, a few tens of parameters that train on whole domains and carry over between radars.

At lead k (1 .. n), on the last frame's grid (Lagrangian), with c_l(k) S-PROG's AR forecast of
cascade level l, sigma_l and mu_l the last frame's level statistics and x_0 the last frame:

    R_k  = sum_l exp(a_kl) sigma_l c_l(k) + mu_l               per level and lead gains
    R'_k = R_k + w_k h(x_0) (x_0 - R_k),  0 <= w_k <= 1        blend with extrapolation where
           h(x) = sigmoid((x - heavy) / width)                 the last frame rains heavily
    q_k  = q_0 + beta_k dq,  beta_k = b (1 + rho + .. + rho^(k-1))
                                                               the distribution to match: the
                                                               last frame's sorted values q_0
                                                               moved along their trend dq over
                                                               the input frames, damped
    P_k  = advect_k(match(mask(R'_k, war(q_k)), q_k))          S-PROG's mask, match, advection

a = 0, w = 0, b = 0 at the start: P_k is S-PROG's forecast (``sprog_forecast``), exactly. The
blend stays a weight between S-PROG and extrapolation (``SprogPrior.bound`` after each step):
unbounded, it grew past 1 at long leads (the heavy cores pushed beyond the last frame) and below
0 at lead 1, and CSI at 1 mm/h fell as it did (bench/RESULTS.md, the prior's stage screened).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from motionrnn.config import PriorPart
from motionrnn.sprog import Sprog, cascade_forecast, finish

TREND_KNOTS = 64  # ranks at which the quantile trend is estimated (then interpolated)
PARTS: dict[PriorPart, tuple[str, ...]] = {  # the parameters of each part
    "gains": ("log_gain",),
    "blend": ("blend",),
    "trend": ("trend", "damping"),
}


def quantile_trend(frames: torch.Tensor) -> torch.Tensor:
    """(B, N) trend per step of the sorted values of frames (B, T, N): the least-squares slope
    over the T frames at TREND_KNOTS ranks, interpolated linearly between them to every rank."""
    b, t, n = frames.shape
    ordered = frames.sort(dim=-1).values
    at = torch.linspace(0, n - 1, min(TREND_KNOTS, n), device=frames.device)
    knots = ordered[..., at.round().long()]  # (B, T, K)
    time = torch.arange(t, device=frames.device, dtype=frames.dtype)
    time = (time - time.mean()).view(1, t, 1)
    slope = (time * (knots - knots.mean(dim=1, keepdim=True))).sum(dim=1) / (time**2).sum()
    return F.interpolate(slope[:, None], size=n, mode="linear", align_corners=True)[:, 0]


class SprogPrior(nn.Module):
    """S-PROG with learned per-level, per-lead gains, a heavy-rain blend with extrapolation and
    a damped trend of the distribution (see the module docstring); zero-initialised."""

    def __init__(
        self,
        leads: int,
        levels: int,
        wet_level: float,
        heavy_level: float,
        heavy_width: float,
    ) -> None:
        super().__init__()
        self.levels, self.wet_level = levels, wet_level
        self.heavy_level, self.heavy_width = heavy_level, heavy_width
        self.log_gain = nn.Parameter(torch.zeros(leads, levels))  # a_kl
        self.blend = nn.Parameter(torch.zeros(leads))  # w_k
        self.trend = nn.Parameter(torch.zeros(()))  # b
        self.damping = nn.Parameter(torch.zeros(()))  # rho = sigmoid(damping)

    def learn(self, parts: Iterable[str]) -> None:
        """Only the parameters of these ``PARTS`` learn; the others keep their values."""
        parts = set(parts)
        if unknown := parts - PARTS.keys():
            raise ValueError(f"unknown prior parts {sorted(unknown)}; known: {sorted(PARTS)}")
        for part, names in PARTS.items():
            for name in names:
                getattr(self, name).requires_grad_(part in parts)

    @torch.no_grad()
    def bound(self) -> None:
        """Project the blend back onto its range, 0 <= w_k <= 1 (after each optimiser step)."""
        self.blend.clamp_(0.0, 1.0)

    def _per_lead(self, values: torch.Tensor, n_out: int) -> torch.Tensor:
        """The first n_out rows of per-lead parameters, the last one repeated beyond them."""
        index = torch.arange(n_out, device=values.device).clamp(max=len(values) - 1)
        return values[index]

    def forward(
        self, frames: torch.Tensor, known: torch.Tensor, motion: torch.Tensor, n_out: int
    ) -> Sprog:
        """frames (B, T >= 3, H, W) on the model's scale, known (B, T, H, W) bool, motion
        (B, 2, H, W) in cells per step -> the prior at leads 1 .. n_out."""
        b = frames.shape[0]
        gains = torch.exp(self._per_lead(self.log_gain, n_out))[None]  # (1, n, L)
        cf = cascade_forecast(frames, known, motion, n_out, self.wet_level, self.levels, gains)
        last = cf.target.view(b, 1, *frames.shape[-2:])  # x_0, unknown cells at its minimum
        heavy = torch.sigmoid((last - self.heavy_level) / self.heavy_width)
        w = self._per_lead(self.blend, n_out).view(1, n_out, 1, 1)
        blended = cf.lagrangian + w * heavy * (last - cf.lagrangian)
        filled = torch.where(known, frames, cf.floor.view(b, 1, 1, 1)).flatten(2)
        steps = torch.arange(n_out, device=frames.device, dtype=frames.dtype)
        rho = torch.sigmoid(self.damping)
        beta = self.trend * torch.cumsum(rho**steps, dim=0)  # (n,)
        ranked = cf.target.sort(dim=-1).values  # q_0, rank by rank like the trend
        target = ranked[:, None] + beta.view(1, n_out, 1) * quantile_trend(filled)[:, None]
        target = torch.maximum(target, cf.floor.view(b, 1, 1))  # nothing below dry
        war = (target >= self.wet_level).double().mean(dim=-1)  # (B, n)
        return finish(cf, blended, target, war, frames, known, motion, self.wet_level)
