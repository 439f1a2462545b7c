"""S-PROG (Seed 2003) in PyTorch, computed as ``pysteps.nowcasts.sprog`` computes it, and
differentiable where a model learns through it.

From the last three frames x_{-2}, x_{-1}, x_0 (a dB-like scale, unknown cells flagged):

1. Lagrangian frames: x_{-k} advected k steps along the motion V onto x_0's time (pysteps'
   semi-Lagrangian scheme, ``motionrnn.layers``; outside the map and next to unknown cells
   its minimum).
2. Cascade: each frame split by pysteps' Gaussian band-pass filters in Fourier space into L
   levels (``bandpass_filters``), each level normalised to zero mean and unit variance.
3. An AR(2) process per level: lag-1 and lag-2 correlations of the Lagrangian levels (over all
   cells), the lag-2 one adjusted to keep the process stationary, Yule-Walker coefficients:

       c_l(t + 1) = phi_l1 c_l(t) + phi_l2 c_l(t - 1)

   Small scales decorrelate fast, their phi shrink and they fade with the lead: S-PROG's smoothing.
4. At lead k: the levels recomposed with x_0's level means and deviations (a gain per level and
   lead scales them when given: the learned stage of ``motionrnn.model``), the cells below the
   (1 - war) percentile set to the minimum (war: x_0's wet-area ratio), the field matched to
   x_0's empirical distribution (``match_distribution``), then advected k steps along V, unknown
   where it comes from a cell unknown in any input frame or from outside the map.

The match is pysteps' ``nonparam_match_empirical_cdf`` exactly in the forward pass. Its gradient
is the slope of the quantile map between detached knots of the forecast's distribution (so the
forecast learns where values should rise or fall past a knot) and, through the target values,
the distribution the forecast is matched to. The wet-area mask is the match's lower tail: every
cell below the top war share gets the target's dry value, which the knots' slope spans too, so a
cell just below the wet edge gets a gradient to cross it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from motionrnn.layers import sample, trace_back

AR_ORDER = 2  # S-PROG's AR(2): three input frames
KNOWN = 1.0 - 1e-6  # an advected value is known when this much of it comes from known cells
MATCH_KNOTS = 128  # knots of the quantile map whose slope is the match's gradient
MAX_CORRELATION = 0.9999  # a level that moves without changing: AR(2) degenerates at 1


def bandpass_filters(
    height: int, width: int, levels: int, gauss_scale: float = 0.5, dtype=torch.float64
) -> torch.Tensor:
    """pysteps' ``filter_gaussian`` weights: (levels, height, width // 2 + 1) on rfft2's grid,
    Gaussian in the logarithm (base q) of the wavenumber, normalised to sum to one, the mean
    (wavenumber 0) in the first level only."""
    if levels < 3:
        raise ValueError(f"a cascade needs at least 3 levels, got {levels}")
    length = max(height, width)
    ky = torch.fft.fftfreq(height, dtype=dtype) * height  # integer wavenumbers, fft order
    kx = torch.fft.rfftfreq(width, dtype=dtype) * width
    radius = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    q = (0.5 * length) ** (1.0 / levels)
    centres = [0.5 * (q ** (k - 1) + q**k) for k in range(1, levels + 1)]
    log_r = torch.where(radius > 0, torch.log(radius.clamp(min=1e-12)) / math.log(q), 0.0)
    weights = torch.stack(
        [
            torch.exp(-((log_r - math.log(c) / math.log(q)) ** 2) / (2 * gauss_scale**2))
            for c in centres
        ]
    )
    weights = weights / weights.sum(dim=0)
    weights[:, 0, 0] = 0.0
    weights[0, 0, 0] = 1.0
    return weights


class Cascade(NamedTuple):
    """A field's normalised levels and each level's mean and standard deviation."""

    levels: torch.Tensor  # (..., L, H, W), each level zero-mean, unit-variance
    means: torch.Tensor  # (..., L)
    stds: torch.Tensor  # (..., L)


def decompose(fields: torch.Tensor, filters: torch.Tensor) -> Cascade:
    """fields (..., H, W) -> their cascades (pysteps' ``decomposition_fft``, normalised)."""
    height, width = fields.shape[-2:]
    spectrum = torch.fft.rfft2(fields)  # (..., H, W//2+1)
    levels = torch.fft.irfft2(spectrum.unsqueeze(-3) * filters, s=(height, width))
    means = levels.mean(dim=(-2, -1))
    stds = levels.std(dim=(-2, -1), correction=0)
    normalised = (levels - means[..., None, None]) / stds.clamp(min=1e-12)[..., None, None]
    return Cascade(normalised, means, stds)


def recompose(levels: torch.Tensor, means: torch.Tensor, stds: torch.Tensor) -> torch.Tensor:
    """(..., L, H, W) normalised levels -> the field sum_l (level_l std_l + mean_l)."""
    return (levels * stds[..., None, None] + means[..., None, None]).sum(dim=-3)


def ar2_coefficients(levels: torch.Tensor) -> torch.Tensor:
    """Yule-Walker AR(2) coefficients (B, L, 2) of Lagrangian cascades (B, 3, L, H, W) (oldest
    first): lag-1 and lag-2 correlations of the newest level with the older ones over all
    cells, the lag-2 one adjusted as pysteps' ``adjust_lag2_corrcoef2`` (stationarity)."""

    def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a = a - a.mean(dim=(-2, -1), keepdim=True)
        b = b - b.mean(dim=(-2, -1), keepdim=True)
        return (a * b).sum(dim=(-2, -1)) / torch.sqrt(
            (a * a).sum(dim=(-2, -1)) * (b * b).sum(dim=(-2, -1))
        ).clamp(min=1e-12)

    g1 = correlation(levels[:, 2], levels[:, 1]).clamp(-MAX_CORRELATION, MAX_CORRELATION)
    g2 = correlation(levels[:, 2], levels[:, 0])
    g2 = torch.maximum(g2, 2 * g1 * g2 - 1)
    g2 = torch.maximum(g2, (3 * g1**2 - 2 + 2 * (1 - g1**2) ** 1.5) / g1**2)
    phi1 = g1 * (1 - g2) / (1 - g1**2)
    phi2 = (g2 - g1**2) / (1 - g1**2)
    return torch.stack([phi1, phi2], dim=-1)


def inside(displacement: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) True where x + displacement lies on the map, between the outer cells'
    centres: scipy's ``map_coordinates`` (mode "constant", which pysteps advects with) gives
    the constant beyond them, without blending it in."""
    _, _, height, width = displacement.shape
    cols = torch.arange(width, device=displacement.device, dtype=displacement.dtype)
    rows = torch.arange(height, device=displacement.device, dtype=displacement.dtype)
    x = cols.view(1, 1, width) + displacement[:, 0]
    y = rows.view(1, height, 1) + displacement[:, 1]
    return ((x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1))[:, None]


def advect(field: torch.Tensor, displacement: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """field (B, c, H, W) read at x + displacement, ``outside`` (B, 1, 1, 1) beyond the map."""
    return torch.where(inside(displacement), sample(field, displacement), outside)


def displacements(motion: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps, 2, H, W): the displacement back along ``motion`` after 1 .. steps steps."""
    out, d = [], torch.zeros_like(motion)
    for _ in range(steps):
        d = trace_back(d, motion)
        out.append(d)
    return torch.stack(out, dim=1)


def lagrangian_frames(
    frames: torch.Tensor, known: torch.Tensor, motion: torch.Tensor
) -> torch.Tensor:
    """(B, 3, H, W) frames (oldest first, unknown cells any value) -> each advected onto the
    newest one's time, unknown cells and those read from them set to the frame's minimum."""
    back = displacements(motion, AR_ORDER)
    out = []
    for i in range(AR_ORDER + 1):
        frame, seen = frames[:, i : i + 1], known[:, i : i + 1].to(frames.dtype)
        low = _masked_min(frame, seen)
        frame = torch.where(seen > 0, frame, low)
        steps = AR_ORDER - i
        if steps:
            d = back[:, steps - 1]
            unknown = sample(1 - seen, d)  # outside the map is not unknown: it is the min
            frame = torch.where(unknown <= 1 - KNOWN, advect(frame, d, low), low)
        out.append(frame[:, 0])
    return torch.stack(out, dim=1)


def _masked_min(x: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Per sample minimum of x over the cells where seen > 0: (B, 1, 1, 1)."""
    big = torch.finfo(x.dtype).max
    return torch.where(seen > 0, x, big).amin(dim=(-3, -2, -1), keepdim=True)


def wet_area_mask(field: torch.Tensor, war: torch.Tensor) -> torch.Tensor:
    """pysteps' ``compute_percentile_mask``: True where field (B, N) is at or above the value
    whose exceedance share is closest to ``war`` (B,), ties at that value included."""
    n = field.shape[-1]
    ordered = field.sort(dim=-1).values
    exceed = torch.arange(n, 0, -1, device=field.device, dtype=torch.float64) / n  # (N,)
    i = (exceed[None] - war[:, None]).abs().argmin(dim=-1)  # first of the closest
    threshold = ordered.gather(-1, i[:, None])
    return field >= threshold


def match_distribution(
    field: torch.Tensor, target: torch.Tensor, knots: int = MATCH_KNOTS
) -> torch.Tensor:
    """pysteps' ``nonparam_match_empirical_cdf(field, target)`` for (B, N) fields and targets:
    each cell gets the target's value of the same rank; cells at the field's minimum and those
    ranked below its count of cells above the minimum get the target's minimum.

    Forward exact; backward: to ``target`` through the values taken, and to ``field`` as a
    change of ranks: the slope of the piecewise-linear map between ``knots`` detached quantiles
    of the field and the target's values at the same ranks, applied to each cell's change less
    the mean change of the cells ranked around it (as many as lie between two knots). A change
    that keeps the order (a shift, a scaling) changes nothing, as in the forward pass; a cell
    that rises takes rank from its neighbours, whose values fall. (Without the second term a
    shared change looked like a change of every value, and a parameter that scales the heavy
    cells learned as if the match were not there.)"""
    b, n = field.shape
    order = field.detach().argsort(dim=-1)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(n, device=field.device).expand(b, n))
    target_sorted = target.sort(dim=-1).values
    low = field.detach().amin(dim=-1, keepdim=True)
    wet = (field.detach() > low).sum(dim=-1, keepdim=True)
    dry = ranks < n - wet
    matched = torch.where(dry, target_sorted[:, :1], target_sorted.gather(-1, ranks))
    # the gradient towards the field: the slope of the quantile map at each cell
    at = torch.linspace(0, n - 1, knots, device=field.device).round().long().expand(b, knots)
    x_knots = field.detach().gather(-1, order.gather(-1, at))
    y_knots = target_sorted.detach().gather(-1, at)
    slopes = (y_knots.diff(dim=-1) / x_knots.diff(dim=-1).clamp(min=1e-6)).clamp(max=1e3)
    segment = torch.searchsorted(x_knots[:, 1:-1].contiguous(), field.detach().contiguous())
    slope = slopes.gather(-1, segment)
    change = field - field.detach()  # zero, with the field's gradient
    return matched + slope * (change - _rank_window_mean(change, order, n // knots))


def _rank_window_mean(values: torch.Tensor, order: torch.Tensor, half: int) -> torch.Tensor:
    """(B, N): for each cell the mean of ``values`` over the cells ranked within ``half`` of it
    on both sides (fewer at the ends, so that the window stays centred; ``order``: the cells by
    rank), differentiable."""
    b, n = values.shape
    ranked = values.gather(-1, order)
    sums = F.pad(ranked.cumsum(dim=-1), (1, 0))  # sums[:, r] = total of ranks < r
    r = torch.arange(n, device=values.device)
    width = torch.minimum(r, n - 1 - r).clamp(max=half)  # centred at the ends too
    lo, hi = r - width, r + width + 1
    mean = (sums[:, hi] - sums[:, lo]) / (hi - lo).to(values.dtype)
    return torch.empty_like(mean).scatter_(-1, order, mean)


class Sprog(NamedTuple):
    """An S-PROG forecast: the values and where they are known."""

    frames: torch.Tensor  # (B, n_out, H, W) on the inputs' scale
    known: torch.Tensor  # (B, n_out, H, W) bool


class CascadeForecast(NamedTuple):
    """What S-PROG advects: its forecasts on the last frame's grid (Lagrangian), before the
    wet-area mask and the match, and what they are matched to."""

    lagrangian: torch.Tensor  # (B, n_out, H, W) recomposed AR forecasts of the cascade
    target: torch.Tensor  # (B, H W) the last frame's values, unknown cells at its minimum
    floor: torch.Tensor  # (B,) the inputs' minimum (pysteps' precip_min)
    war: torch.Tensor  # (B,) float64, the last frame's share of cells at or above the wet
    # threshold
    known: torch.Tensor  # (B, H, W) bool, known in all three input frames


def cascade_forecast(
    frames: torch.Tensor,
    known: torch.Tensor,
    motion: torch.Tensor,
    n_out: int,
    wet_threshold: float,
    levels: int = 6,
    gains: torch.Tensor | None = None,
) -> CascadeForecast:
    """S-PROG's steps 1-4 up to the recomposed fields, from frames (B, >= 3, H, W) (the last
    three used), known (same shape, bool), motion (B, 2, H, W) in cells per step; ``gains``
    (B or 1, n_out, L) multiply each level at each lead (all ones: S-PROG)."""
    frames, known = frames[:, -(AR_ORDER + 1) :], known[:, -(AR_ORDER + 1) :]
    b, _, height, width = frames.shape
    seen = known.to(frames.dtype)
    floor = _masked_min(frames, seen).view(b)
    aligned = lagrangian_frames(frames, known, motion)  # (B, 3, H, W)
    filters = bandpass_filters(height, width, levels).to(frames.device, frames.dtype)
    cascade = decompose(aligned, filters)  # levels (B, 3, L, H, W)
    phi = ar2_coefficients(cascade.levels)  # (B, L, 2)
    older, newer = cascade.levels[:, 1], cascade.levels[:, 2]
    means, stds = cascade.means[:, 2], cascade.stds[:, 2]
    forecasts = []
    for lead in range(n_out):
        older, newer = newer, phi[..., 0, None, None] * newer + phi[..., 1, None, None] * older
        scale = stds if gains is None else stds * gains[:, lead]
        forecasts.append(recompose(newer, means, scale))
    last = aligned[:, -1].reshape(b, -1)
    war = (last >= wet_threshold).double().mean(dim=-1)  # float64, as pysteps'
    return CascadeForecast(torch.stack(forecasts, dim=1), last, floor, war, known.all(dim=1))


def match_leads(
    lagrangian: torch.Tensor, target: torch.Tensor, war: torch.Tensor, floor: torch.Tensor
) -> torch.Tensor:
    """S-PROG's step 4 before the advection: each lead's field (B, n, H, W) with the cells below
    its (1 - war) percentile set to ``floor`` (B,), then matched to ``target`` (B, n, N) (the
    distribution at each lead); war (B, n) float64."""
    b, n, height, width = lagrangian.shape
    flat = lagrangian.reshape(b * n, -1)
    low = floor.repeat_interleave(n)[:, None].to(flat.dtype)
    masked = torch.where(wet_area_mask(flat, war.reshape(-1)), flat, low)
    return match_distribution(masked, target.reshape(b * n, -1)).view(b, n, height, width)


def advect_leads(
    fields: torch.Tensor, cover: torch.Tensor, motion: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lead k's field of (B, n, H, W) advected k steps along ``motion``, and (B, n, H, W) bool
    where it is known: read from cells of ``cover`` (B, H, W) bool only, none from outside."""
    back = displacements(motion, fields.shape[1])  # (B, n, 2, H, W)
    known = cover[:, None].to(fields.dtype)
    values, seen = [], []
    for lead in range(fields.shape[1]):
        d = back[:, lead]
        values.append(sample(fields[:, lead : lead + 1], d)[:, 0])
        seen.append((inside(d) & (sample(known, d) >= KNOWN))[:, 0])
    return torch.stack(values, dim=1), torch.stack(seen, dim=1)


def finish(
    cf: CascadeForecast,
    lagrangian: torch.Tensor,
    target: torch.Tensor,
    war: torch.Tensor,
    frames: torch.Tensor,
    known: torch.Tensor,
    motion: torch.Tensor,
    wet_threshold: float,
) -> Sprog:
    """S-PROG's step 4 from the recomposed fields (B, n, H, W) on: the wet-area mask (war
    (B, n) float64), the match to ``target`` (B, n, N), the advection; a sample whose three last
    frames have no cell above ``wet_threshold`` is its minimum everywhere (pysteps'
    ``check_norain``)."""
    matched = match_leads(lagrangian, target, war, cf.floor)
    values, seen = advect_leads(matched, cf.known, motion)
    last, last_known = frames[:, -(AR_ORDER + 1) :], known[:, -(AR_ORDER + 1) :]
    dry = ~((last > wet_threshold) & last_known).flatten(1).any(dim=1)
    values = torch.where(dry[:, None, None, None], cf.floor[:, None, None, None], values)
    return Sprog(values, seen)


def sprog_forecast(
    frames: torch.Tensor,
    known: torch.Tensor,
    motion: torch.Tensor,
    n_out: int,
    wet_threshold: float,
    levels: int = 6,
) -> Sprog:
    """pysteps' S-PROG nowcast (``conditional=False``, ``probmatching_method="cdf"``, no noise)
    of n_out steps from frames (B, >= 3, H, W) on a dB-like scale (any affine map of dB: the
    forecast is the same map of pysteps'), known (B, >= 3, H, W) bool, motion (B, 2, H, W) in
    cells per step, x first. A sample with no cell above ``wet_threshold`` in the three
    frames is dry (its minimum) everywhere."""
    cf = cascade_forecast(frames, known, motion, n_out, wet_threshold, levels)
    target = cf.target[:, None].expand(-1, n_out, -1)
    war = cf.war[:, None].expand(-1, n_out)
    return finish(cf, cf.lagrangian, target, war, frames, known, motion, wet_threshold)
